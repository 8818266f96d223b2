"""The benchmarks' lean HTTP client (bench/lean_http.py) against real servers on
loopback: what it reads of an answer, the connections it keeps and how it fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bench.lean_http import LeanHTTPError, LeanPool
from tests.support.loopback_http import LoopbackServer


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, list[tuple[bytes, str, int]]]]:
    """Answers 200, or the status a body asks for; records (body, signature, peer port)."""
    seen: list[tuple[bytes, str, int]] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
        seen.append((body, request.headers.get("x-hub-signature-256", ""), peer))
        if body.startswith(b"status="):
            return web.json_response({"error": "asked"}, status=int(body[7:]))
        if body == b"chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b'{"a":')
            await response.write(b"1}")
            await response.write_eof()
            return response  # type: ignore[return-value]
        if body == b"slow":
            await asyncio.sleep(0.2)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    async with LoopbackServer(app) as url:
        yield int(url.rsplit(":", 1)[1]), seen


async def test_posts_the_body_and_headers_and_reads_the_status(
    echo: tuple[int, list[tuple[bytes, str, int]]],
) -> None:
    port, seen = echo
    pool, path = LeanPool.for_url(f"http://127.0.0.1:{port}/webhook")
    try:
        assert await pool.post(path, b'{"x":1}', {"x-hub-signature-256": "sha256=ab"}) == 200
        assert await pool.post(path, b"status=503") == 503
        assert await pool.post(path, b"chunked") == 200
        assert await pool.post(path, b"status=401") == 401
    finally:
        pool.close()
    assert [body for body, _, _ in seen] == [b'{"x":1}', b"status=503", b"chunked", b"status=401"]
    assert seen[0][1] == "sha256=ab"
    # one keep-alive connection served the four posts one after another
    assert len({peer for _, _, peer in seen}) == 1


async def test_never_opens_more_connections_than_its_limit(
    echo: tuple[int, list[tuple[bytes, str, int]]],
) -> None:
    port, seen = echo
    pool = LeanPool("127.0.0.1", port, limit=3)
    try:
        statuses = await asyncio.gather(*(pool.post("/webhook", b"slow") for _ in range(9)))
    finally:
        pool.close()
    assert statuses == [200] * 9
    assert pool.opened == 3
    assert len({peer for _, _, peer in seen}) == 3


async def test_a_connection_the_server_drops_fails_that_post_and_the_next_one_reconnects() -> None:
    conns = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal conns
        conns += 1
        await reader.readuntil(b"\r\n\r\n")
        if conns == 1:
            writer.close()  # drops the first request unanswered
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()  # keep-alive until the client closes

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = LeanPool("127.0.0.1", port, limit=1)
    try:
        with pytest.raises(LeanHTTPError, match="connection lost"):
            await pool.post("/webhook", b"{}")
        assert await pool.post("/webhook", b"{}") == 200
    finally:
        pool.close()
        server.close()
        await server.wait_closed()
    assert conns == 2


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError, match="only plain http"):
        LeanPool.for_url("https://example.invalid/webhook")
