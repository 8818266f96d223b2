"""`GET /dashboard`: the report's figures as charts for a chosen period.

- `GET /dashboard` the page (`dashboard_assets/`: HTML, CSS and a small vanilla JS that
  draws inline SVG; nothing is fetched from elsewhere, so it works offline);
- `GET /dashboard/data?from=…&to=…` the figures as JSON (`zapstream.analytics.report`,
  the same as `zapstream report --json`; `from`/`to` as on the command line);
- `POST /dashboard/login` (form field `token`) sets the session cookie; a client that
  gets the token wrong 5 times in 5 minutes is refused (429, `Retry-After`) for 15
  minutes (`ingest.login_throttle`);
  `POST /dashboard/logout` clears it.

Who may see it: `ingest.admin_session`. Without access the page answers 401 with the
login form (403 when it cannot be opened at all), the data 401/403 JSON.

DuckDB is read the single-writer way (`zapstream.analytics.source`): through the
running sink's `/query`, or the file read-only for the length of one report when no
sink runs; one report at a time, on a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ingest.admin_session import Access, Sessions
from ingest.login_throttle import LoginThrottle
from zapstream.analytics.period import InvalidPeriod, Period, parse_period
from zapstream.analytics.report import build_report
from zapstream.analytics.source import reader
from zapstream.db_query import QueryFailed
from zapstream.settings import Settings

log = logging.getLogger("zapstream.dashboard")

ASSETS = Path(__file__).with_name("dashboard_assets")
LOGIN_FORM_MAX_BYTES = 4096
FAILED_LOGIN_DELAY_S = 0.5
"""A wrong token is answered this much later (slows guessing a little)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _page(name: str, status: int = 200, message: str = "") -> HTMLResponse:
    html = _asset(name).replace("{{message}}", message)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _locked(wait_s: float) -> HTMLResponse:
    """429: too many wrong tokens from this client (`ingest.login_throttle`)."""
    minutes = max(1, math.ceil(wait_s / 60))
    resp = _page("login.html", 429, f"Too many wrong tokens: try again in {minutes} minute(s).")
    resp.headers["Retry-After"] = str(math.ceil(wait_s))
    return resp


def _closed() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>zapstream</title><p>The dashboard is closed: set ADMIN_TOKEN.",
        status_code=403,
        headers=SECURITY_HEADERS,
    )


def dashboard_router(settings: Settings) -> APIRouter:
    router = APIRouter()
    sessions = Sessions(settings)
    throttle = LoginThrottle()
    one_at_a_time = asyncio.Lock()

    @router.get("/dashboard", include_in_schema=False)
    async def page(request: Request) -> Response:
        access = sessions.access(request)
        if access is Access.CLOSED:
            return _closed()
        if access is Access.LOGIN:
            return _page("login.html", 401)
        return _page("dashboard.html")

    def asset(file: str) -> Response:
        return Response(_asset(file), media_type=_TYPES[Path(file).suffix], headers=SECURITY_HEADERS)

    router.add_api_route(
        "/dashboard/dashboard.js", lambda: asset("dashboard.js"), include_in_schema=False
    )
    router.add_api_route(
        "/dashboard/dashboard.css", lambda: asset("dashboard.css"), include_in_schema=False
    )

    @router.post("/dashboard/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if sessions.access(request) is Access.CLOSED:
            return _closed()
        body = await request.body()
        if len(body) > LOGIN_FORM_MAX_BYTES:
            return _page("login.html", 413, "That is too long to be the token.")
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if sessions.open:
            return RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        client = request.client.host if request.client else "unknown"
        wait = throttle.locked_for(client, time.monotonic())
        if wait > 0:
            return _locked(wait)
        if not sessions.token_ok(given):
            locked = throttle.failed(client, time.monotonic())
            log.warning("dashboard login refused", extra={"client": client, "locked_s": round(locked)})
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)
            return _locked(locked) if locked else _page("login.html", 401, "Wrong token.")
        throttle.succeeded(client)
        resp = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        sessions.set_cookie(request, resp)
        return resp

    @router.post("/dashboard/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        resp = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        sessions.clear_cookie(request, resp)
        return resp

    @router.get("/dashboard/data")
    async def data(request: Request) -> Response:
        access = sessions.access(request)
        if access is not Access.ALLOWED:
            status, detail = (
                (403, "the dashboard is closed: set ADMIN_TOKEN")
                if access is Access.CLOSED
                else (401, "log in at /dashboard or send Authorization: Bearer <ADMIN_TOKEN>")
            )
            return JSONResponse(
                {"error": "unauthorized", "detail": detail},
                status_code=status,
                headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
            )
        q = request.query_params
        try:
            period = parse_period(q.get("from") or None, q.get("to") or None, datetime.now(UTC))
        except InvalidPeriod as exc:
            return JSONResponse({"error": "bad_period", "detail": exc.reason}, status_code=400)
        async with one_at_a_time:
            try:
                figures = await asyncio.to_thread(_report, settings, period)
            except QueryFailed as exc:
                log.warning("dashboard data unavailable: %s", exc)
                return JSONResponse(
                    {"error": "no_data", "detail": str(exc)}, status_code=503, headers=SECURITY_HEADERS
                )
        return JSONResponse(figures, headers=SECURITY_HEADERS)

    return router


def _report(settings: Settings, period: Period) -> dict[str, Any]:
    with reader(settings, prefer_sink=True) as r:
        return build_report(r.query, period)
