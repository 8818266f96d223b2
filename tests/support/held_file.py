"""A process that holds a DuckDB file as the sink does, and serves the sink's HTTP port.

`python -m tests.support.held_file FILE PORT`: opens FILE for writing through the
sink's `Loader` (so no other process can open it, not even read-only) and serves
`sinks.web` (`/ready`, `/query`, `/export`) on 127.0.0.1:PORT until SIGTERM. No broker:
the analytics tests need the sink's lock and its read paths, not its consumer.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from sinks.loader import Loader
from sinks.web import start_web, web_app


async def _serve(path: Path, port: int) -> None:
    loader = Loader(path)
    loader.open()
    runner = await start_web(web_app(loader, lambda: (True, 0)), port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("holding", path, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        loader.close()


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1]), int(sys.argv[2])))
