"""A Graph API on a free loopback port whose answers a test writes as functions.

The clients under test (the Graph client's aiohttp session) talk real HTTP to it.
Each request reaches the test's handler as an `httpx.Request` (method, URL, headers,
body: only a convenient record here), and the `httpx.Response` the handler returns is
sent back as is. A handler that raises hangs up without an answer."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from aiohttp import web

from tests.support.loopback_http import LoopbackServer

Handler = Callable[[httpx.Request], httpx.Response]


class GraphStub:
    """`async with GraphStub(handler) as graph:` serves until the block ends;
    `graph.url` is its base URL, `graph.requests` what reached it, in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.url = ""
        self._server: LoopbackServer | None = None

    async def __aenter__(self) -> GraphStub:
        async def handle(request: web.Request) -> web.StreamResponse:
            seen = httpx.Request(
                request.method,
                str(request.url),
                headers=list(request.headers.items()),
                content=await request.read(),
            )
            self.requests.append(seen)
            try:
                answer = self.handler(seen)
            except Exception:
                assert request.transport is not None
                request.transport.close()  # no answer at all
                return web.Response(status=500)
            headers = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=answer.status_code, body=answer.content, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._server = LoopbackServer(app)
        self.url = await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.__aexit__(*exc)
