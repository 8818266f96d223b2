"""`zapstream sink`, but DuckDB loads fail while a marker file exists.

Run as `python -m tests.support.flaky_sink MARKER` with the usual environment: the
same Faust app, agent and settings as the real sink, only the load is sabotaged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

from processors.app import create_faust_app
from sinks.agent import register_sink
from sinks.duckdb_sink import DuckDBSink
from zapstream.log import configure_logging
from zapstream.settings import Settings
from zapstream.supervisor.runners import _run_faust


class FlakySink(DuckDBSink):
    marker: Path = Path("/nonexistent")

    def load(self, batch: dict[str, pa.Table]) -> dict[str, int]:
        if self.marker.exists():
            self.marker.with_suffix(".failed").touch()
            raise OSError("disk unavailable (test)")
        return super().load(batch)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    sink = FlakySink(settings.resolved_duckdb_path)
    sink.marker = Path(sys.argv[1])
    sink.open()
    app = create_faust_app(
        settings, app_id=f"{settings.app_id}-sink", web_port=settings.sink_web_port, web=True
    )
    register_sink(app, settings, sink)
    _run_faust(app, settings)


if __name__ == "__main__":
    main()
