"""The stack's pooled HTTP clients, both on aiohttp's connection pool.

- `create_session`: a plain `aiohttp.ClientSession`, for the hot path (the Graph API
  sends, one per reply).
- `create_http_client`: httpx's interface over aiohttp's pool
  (`httpx_aiohttp.AiohttpTransport`), for the calls where httpx's interface earns its
  cost (streamed media downloads, ENGINE=http, the helpdesk notification).

Measured on the 2-core development machine (`bench/http_client_bench.py`: 3,000 POSTs
8 at a time to a local aiohttp server, CPU of client and server together): httpx's own
transport (httpcore over anyio) 1.8-2.2 ms a request, httpx over aiohttp's pool
0.7-0.8 ms, aiohttp alone 0.29 ms. httpcore's pool also does work proportional to its
connections times its requests on every request it starts or ends (64 concurrent
requests on one client cost 3.2 ms each); aiohttp's does not.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

USER_AGENT = "zapstream"


def create_session(
    *,
    max_connections: int = 8,
    timeout_s: float = 10.0,
    connect_timeout_s: float = 3.0,
) -> aiohttp.ClientSession:
    """One pooled aiohttp session; create it inside the event loop that uses it.
    Keep-alive connections are reused across requests (TLS setup dominates a cold
    request); a request waits for a free connection within its own `timeout_s`."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30.0),
        timeout=aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s),
        headers={"User-Agent": USER_AGENT},
    )


def create_http_client(
    *,
    max_connections: int = 8,
    timeout_s: float = 10.0,
    connect_timeout_s: float = 3.0,
) -> httpx.AsyncClient:
    """One pooled httpx client over aiohttp's connection pool; `pool` waits for a free
    connection no longer than a request may take."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),  # the pool's limits live there
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        headers={"User-Agent": USER_AGENT},
    )
