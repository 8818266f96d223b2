"""A lean HTTP/1.1 POST client for the load generators of the benchmarks.

The benchmarks run their load generator on the same two cores as the stack they
measure, so every microsecond it spends per request is taken from the stack and shows
up as latency. aiohttp's client costs ~150-250 µs of CPU per POST (request and
response objects, header multidicts, a timer per request); this client keeps
persistent connections as bare `asyncio.Protocol`s, writes each request as one
pre-formatted byte string and reads only the status line and the length of the
answer: ~15-25 µs per POST. It speaks just what the webhook API answers: HTTP/1.1
keep-alive, one request at a time per connection, bodies with a Content-Length or
chunked.

    pool = LeanPool("127.0.0.1", 8000, limit=256)
    status = await pool.post("/webhook", body, {"x-hub-signature-256": sig})
    pool.close()
"""

from __future__ import annotations

import asyncio
import collections
from urllib.parse import urlsplit


class LeanHTTPError(ConnectionError):
    """The connection broke or the answer did not parse."""


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0
        self.need = -1  # body bytes still to read once the head is in; -1: head not in
        self.chunked = False
        self.close_after = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(LeanHTTPError(f"connection lost: {exc!r}"))

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buf.clear()
        self.need = -1
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(LeanHTTPError(f"bad answer: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def _parse(self) -> None:
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).split(b"\r\n")
            del self.buf[: end + 4]
            self.status = int(head[0].split(b" ", 2)[1])
            self.need, self.chunked, self.close_after = 0, False, False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self.need = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    self.chunked = True
                elif name == b"connection" and b"close" in value.lower():
                    self.close_after = True
        if self.chunked:
            if not self.buf.endswith(b"0\r\n\r\n"):
                return  # the answers here are small: the last chunk closes them
        elif len(self.buf) < self.need:
            return
        self.buf.clear()
        self.need = -1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.status)
        if self.close_after and self.transport is not None:
            self.transport.close()


class LeanPool:
    """Up to `limit` keep-alive connections to one host; `post` waits for a free one."""

    def __init__(self, host: str, port: int, *, limit: int = 256, timeout_s: float = 60.0) -> None:
        self.host, self.port, self.limit, self.timeout_s = host, port, limit, timeout_s
        self.idle: collections.deque[_Conn] = collections.deque()
        self.opened = 0
        self.free = asyncio.Condition()
        self.conns: list[_Conn] = []

    @classmethod
    def for_url(cls, url: str, **kw: float) -> tuple[LeanPool, str]:
        """A pool for the URL's host and the path to post to."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only plain http://host:port/path URLs, not {url!r}")
        return cls(parts.hostname, parts.port or 80, **kw), parts.path or "/"  # type: ignore[arg-type]

    async def _acquire(self) -> _Conn:
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.lost:
                    return conn
                self.opened -= 1
            if self.opened < self.limit:
                self.opened += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Conn, self.host, self.port
                    )
                except OSError:
                    self.opened -= 1
                    raise
                self.conns.append(conn)
                return conn
            async with self.free:
                await self.free.wait()

    async def _release(self, conn: _Conn) -> None:
        if conn.lost or conn.close_after:
            self.opened -= 1
        else:
            self.idle.append(conn)
        async with self.free:
            self.free.notify()

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        """POST `body`; the answer's status code. Raises LeanHTTPError or TimeoutError."""
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        conn = await self._acquire()
        ok = False
        try:
            status = await asyncio.wait_for(conn.request(data), self.timeout_s)
            ok = True
            return status
        finally:
            if not ok and conn.transport is not None:
                conn.transport.close()
                conn.lost = True
            await self._release(conn)

    def close(self) -> None:
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()
        self.conns.clear()
        self.idle.clear()
