"""Who may open `/dashboard` and its data: bearer token, the signed session cookie
from the login form, open only in development without ADMIN_TOKEN, closed in
production without it. In-process (httpx's ASGI transport), no DuckDB needed: an
allowed data request with no file answers 503, a refused one 401/403.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from ingest.admin_session import COOKIE, SESSION_TTL_S, Sessions
from ingest.dashboard import dashboard_router
from zapstream.settings import Settings

TOKEN = "s3cret-admin-token"


def _settings(tmp_path: Path, token: str | None, env: str = "development") -> Settings:
    return Settings(
        admin_token=SecretStr(token) if token else None,
        env=env,  # type: ignore[arg-type]
        duckdb_path=tmp_path / "none.duckdb",
        sink_web_port=1,
    )


def _call(settings: Settings, method: str, path: str, **kw: object) -> httpx.Response:
    app = FastAPI()
    app.include_router(dashboard_router(settings))

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kw)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_without_the_token_the_page_is_the_login_form_with_401(tmp_path: Path) -> None:
    s = _settings(tmp_path, TOKEN)
    page = _call(s, "GET", "/dashboard")
    assert page.status_code == 401
    assert 'action="/dashboard/login"' in page.text
    assert TOKEN not in page.text
    data = _call(s, "GET", "/dashboard/data")
    assert data.status_code == 401
    wrong = _call(s, "GET", "/dashboard/data", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_the_bearer_token_opens_page_and_data(tmp_path: Path) -> None:
    s = _settings(tmp_path, TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = _call(s, "GET", "/dashboard", headers=auth)
    assert page.status_code == 200
    assert "dashboard.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert _call(s, "GET", "/dashboard/data", headers=auth).status_code == 503  # no file yet


def test_login_sets_an_httponly_strict_cookie_that_is_not_the_token(tmp_path: Path) -> None:
    s = _settings(tmp_path, TOKEN)
    bad = _call(s, "POST", "/dashboard/login", content=b"token=nope",
                headers={"content-type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 401
    assert "set-cookie" not in bad.headers
    ok = _call(s, "POST", "/dashboard/login", content=f"token={TOKEN}".encode(),
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Path=/dashboard" in cookie
    assert TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    page = _call(s, "GET", "/dashboard", cookies={COOKIE: value})
    assert page.status_code == 200
    assert _call(s, "GET", "/dashboard/data", cookies={COOKIE: value}).status_code == 503


def test_a_forged_expired_or_foreign_cookie_is_refused(tmp_path: Path) -> None:
    s = _settings(tmp_path, TOKEN)
    sessions = Sessions(s)
    good = sessions.issue()
    assert sessions.valid(good)
    body, _, sig = good.rpartition(".")
    forged = body.replace("v1.", "v1.9", 1) + "." + sig  # a later expiry, same signature
    assert not sessions.valid(forged)
    assert not sessions.valid(sessions.issue(now=0))  # expired long ago
    assert not sessions.valid(good, now=10**12)
    other = Sessions(_settings(tmp_path, "another-token"))
    assert not other.valid(good)  # a changed ADMIN_TOKEN ends every session
    for cookie in (forged, "garbage", good + "x", TOKEN):
        assert _call(s, "GET", "/dashboard/data", cookies={COOKIE: cookie}).status_code == 401
    assert SESSION_TTL_S > 0


def test_production_without_a_token_is_closed_even_with_a_cookie(tmp_path: Path) -> None:
    s = _settings(tmp_path, None, env="production")
    assert _call(s, "GET", "/dashboard").status_code == 403
    assert _call(s, "GET", "/dashboard/data").status_code == 403
    assert _call(s, "POST", "/dashboard/login", content=b"token=").status_code == 403


def test_production_with_a_token_marks_the_cookie_secure(tmp_path: Path) -> None:
    s = _settings(tmp_path, TOKEN, env="production")
    assert _call(s, "GET", "/dashboard").status_code == 401
    ok = _call(s, "POST", "/dashboard/login", content=f"token={TOKEN}".encode(),
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert ok.status_code == 303
    assert "Secure" in ok.headers["set-cookie"]


def test_development_without_a_token_is_open(tmp_path: Path) -> None:
    s = _settings(tmp_path, None)
    assert _call(s, "GET", "/dashboard").status_code == 200
    assert _call(s, "GET", "/dashboard/data").status_code == 503
    assert _call(s, "GET", "/dashboard/data?from=soon").status_code == 400


@pytest.mark.parametrize("asset", ["dashboard.js", "dashboard.css"])
def test_the_assets_are_served_from_the_package(tmp_path: Path, asset: str) -> None:
    resp = _call(_settings(tmp_path, TOKEN), "GET", f"/dashboard/{asset}")
    assert resp.status_code == 200
    assert len(resp.text) > 100


def test_a_client_that_keeps_guessing_is_locked_out_and_others_are_not(tmp_path: Path) -> None:
    """Five wrong tokens in a row: the sixth try, even with the right token, is 429 with
    Retry-After; another address still logs in."""
    app = FastAPI()
    app.include_router(dashboard_router(_settings(tmp_path, TOKEN)))
    form = {"content-type": "application/x-www-form-urlencoded"}

    async def login(token: str, client: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/dashboard/login", content=f"token={token}".encode(), headers=form)

    async def go() -> list[httpx.Response]:
        wrong = [await login(f"guess{i}", "10.0.0.9") for i in range(5)]
        return [*wrong, await login(TOKEN, "10.0.0.9"), await login(TOKEN, "10.0.0.7")]

    *wrong, locked, other = asyncio.run(go())
    assert [r.status_code for r in wrong] == [401, 401, 401, 401, 429]
    assert locked.status_code == 429
    assert "set-cookie" not in locked.headers
    assert int(locked.headers["retry-after"]) > 60
    assert "Too many wrong tokens" in locked.text
    assert other.status_code == 303
    assert "set-cookie" in other.headers
