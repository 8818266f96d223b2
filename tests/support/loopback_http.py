"""An aiohttp app served on a free loopback port, for tests that need a real HTTP
peer (the Graph client's transport, a decision service, a webhook receiver)."""

from __future__ import annotations

from aiohttp import web


class LoopbackServer:
    """`async with LoopbackServer(app) as base_url:` serves `app` until the block ends;
    `base_url` is "http://127.0.0.1:PORT"."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)

    async def __aenter__(self) -> str:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
