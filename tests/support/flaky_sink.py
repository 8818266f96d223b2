"""`zapstream sink`, but its DuckDB loads misbehave while a marker file exists.

    python -m tests.support.flaky_sink --fail-while MARKER    # loads fail, transiently
    python -m tests.support.flaky_sink --block-while MARKER   # loads wait

run with the usual environment: the same consumer, loader and settings as the real
sink, only `Loader.load` is sabotaged. A failing load touches MARKER.failed, a
waiting one MARKER.loading, so a test knows when it happened.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sinks.batch import Decoded
from sinks.loader import Loader, LoadReport
from sinks.service import run_sink
from zapstream.errors import SinkStorageUnavailable
from zapstream.settings import Settings


class FlakyLoader(Loader):
    marker: Path = Path("/nonexistent")
    block: bool = False

    def load(self, decoded: Decoded) -> LoadReport:
        if self.block:
            while self.marker.exists():
                self.marker.with_suffix(".loading").touch()
                time.sleep(0.05)
        elif self.marker.exists():
            self.marker.with_suffix(".failed").touch()
            raise SinkStorageUnavailable("disk unavailable (test)")
        return super().load(decoded)


def main() -> None:
    mode, marker = sys.argv[1], Path(sys.argv[2])
    assert mode in ("--fail-while", "--block-while"), mode
    settings = Settings()
    loader = FlakyLoader(settings.resolved_duckdb_path)
    loader.marker = marker
    loader.block = mode == "--block-while"
    run_sink(settings, loader)


if __name__ == "__main__":
    main()
