"""CPU per HTTP request of the clients the stack could post with, against a local
aiohttp server in the same process (so the figure is client + server; the server's
share is the same in every row).

    .venv/bin/python bench/http_client_bench.py --requests 3000 --concurrency 8

Rows: `httpx` (httpx's own transport: httpcore over anyio), `httpx+aiohttp` (httpx's
interface over aiohttp's pool, `httpx_aiohttp.AiohttpTransport`: what the worker's
Graph client uses), `aiohttp` (aiohttp's client: what the sandbox's status webhooks
use). Each client posts a small JSON body with a bearer header, as a send does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import uvloop
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

BODY = {"messaging_product": "whatsapp", "to": "5511987654321", "text": {"body": "hello"}}
HEADERS = {"Authorization": "Bearer token"}


async def serve() -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"messages": [{"id": "wamid.x"}]})

    app = web.Application()
    app.router.add_post("/messages", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/messages"


async def measure(kind: str, url: str, requests: int, concurrency: int) -> float:
    closers: list[Callable[[], Awaitable[None]]] = []
    post: Callable[[], Awaitable[object]]
    if kind in ("httpx", "httpx+aiohttp"):
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        transport = AiohttpTransport(limits=limits) if kind == "httpx+aiohttp" else None
        client = httpx.AsyncClient(limits=limits, transport=transport)
        closers.append(client.aclose)

        async def post() -> object:
            return (await client.post(url, json=BODY, headers=HEADERS)).json()
    else:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        closers.append(session.close)

        async def post() -> object:
            async with session.post(url, json=BODY, headers=HEADERS) as response:
                return await response.json()

    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await post()

    await asyncio.gather(*(one() for _ in range(200)))  # connections up, code warm
    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    cpu = time.process_time() - started
    for close in closers:
        await close()
    return cpu / requests * 1000


async def main(args: argparse.Namespace) -> None:
    runner, url = await serve()
    kinds = ["httpx", "httpx+aiohttp", "aiohttp"]
    results: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            results[kind].append(await measure(kind, url, args.requests, args.concurrency))
    await runner.cleanup()
    print(f"{args.requests} POSTs, {args.concurrency} at a time, {args.rounds} rounds")
    print(f"{'client':<16}{'cpu ms/request (client + server), median':>44}{'min':>8}")
    for kind in kinds:
        print(f"{kind:<16}{statistics.median(results[kind]):>44.3f}{min(results[kind]):>8.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    uvloop.install()
    asyncio.run(main(ap.parse_args()))
