"""`WebhookFastPath`: POST /webhook to its handler, everything else to the app."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ingest.app import WebhookFastPath


def app_with_handler() -> tuple[FastAPI, list[bytes]]:
    app = FastAPI()
    bodies: list[bytes] = []

    async def handler(request: Request) -> Response:
        bodies.append(await request.body())
        return JSONResponse({"status": "ok", "via": "handler"})

    @app.get("/webhook")
    async def verify() -> Response:
        return PlainTextResponse("challenge")

    @app.post("/other")
    async def other() -> dict[str, str]:
        return {"via": "app"}

    app.state.webhook_handler = handler
    return app, bodies


@pytest.mark.asyncio
async def test_a_webhook_post_reaches_its_handler_and_the_rest_the_app() -> None:
    app, bodies = app_with_handler()
    transport = httpx.ASGITransport(app=WebhookFastPath(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        posted = await client.post("/webhook", content=b'{"object": "x"}')
        assert posted.status_code == 200
        assert posted.json() == {"status": "ok", "via": "handler"}
        assert bodies == [b'{"object": "x"}']  # the exact bytes (the signature is over them)
        verified = await client.get("/webhook")
        assert (verified.status_code, verified.text) == (200, "challenge")
        other = await client.post("/other")
        assert other.json() == {"via": "app"}
        missing = await client.post("/webhook/more")
        assert missing.status_code == 404
    assert len(bodies) == 1
