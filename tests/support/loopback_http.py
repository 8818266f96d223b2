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
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
