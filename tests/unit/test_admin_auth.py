import asyncio
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from ingest.auth import admin_guard, token_matches
from zapstream.settings import Settings


class _Client:
    """A synchronous face over httpx's in-process ASGI transport."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get(path, headers=headers)

        return asyncio.run(call())


def _client(token: str | None) -> _Client:
    settings = Settings(admin_token=SecretStr(token) if token else None)
    app = FastAPI()
    guard = admin_guard(settings)

    @app.get("/admin")
    def admin(_: Annotated[None, Depends(guard)]) -> dict[str, str]:
        return {"ok": "yes"}

    return _Client(app)


def test_the_right_bearer_token_is_let_through() -> None:
    resp = _client("s3cret").get("/admin", headers={"Authorization": "Bearer s3cret"})
    assert resp.status_code == 200


def test_a_wrong_or_missing_token_is_refused_without_saying_which() -> None:
    client = _client("s3cret")
    assert client.get("/admin", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/admin").status_code == 401
    assert client.get("/admin", headers={"Authorization": "Basic s3cret"}).status_code == 401


def test_admin_endpoints_are_closed_when_no_token_is_configured() -> None:
    resp = _client(None).get("/admin", headers={"Authorization": "Bearer anything"})
    assert resp.status_code == 403


def test_token_compare_refuses_empty_values() -> None:
    assert not token_matches("", "")
    assert not token_matches(None, "x")
    assert token_matches("x", "x")
