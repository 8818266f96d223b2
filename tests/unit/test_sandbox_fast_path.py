"""`SendFastPath`: a Graph send to its handler with its path parameters, everything else
(the sandbox's own /_sandbox routes, media, other paths) to the FastAPI app."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from zapstream.sandbox.app import SendFastPath


def app_with_handler() -> tuple[FastAPI, list[tuple[str, str, bytes]]]:
    app = FastAPI()
    calls: list[tuple[str, str, bytes]] = []

    async def handler(version: str, phone_number_id: str, request: Request) -> JSONResponse:
        calls.append((version, phone_number_id, await request.body()))
        return JSONResponse({"via": "handler"})

    @app.post("/_sandbox/config")
    async def config() -> dict[str, str]:
        return {"via": "app"}

    @app.post("/{version}/{phone_number_id}/media")
    async def media(version: str, phone_number_id: str) -> dict[str, str]:
        return {"via": "app", "version": version}

    app.state.send_handler = handler
    return app, calls


@pytest.mark.asyncio
async def test_a_send_reaches_its_handler_with_its_path_and_the_rest_the_app() -> None:
    app, calls = app_with_handler()
    transport = httpx.ASGITransport(app=SendFastPath(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        sent = await client.post("/v21.0/PNID1/messages", content=b'{"to": "1"}')
        assert sent.json() == {"via": "handler"}
        assert calls == [("v21.0", "PNID1", b'{"to": "1"}')]
        # the handler judges the version itself, as the FastAPI route did
        await client.post("/not-a-version/PNID1/messages", content=b"{}")
        assert calls[-1][:2] == ("not-a-version", "PNID1")
        assert (await client.post("/_sandbox/config")).json() == {"via": "app"}
        media = await client.post("/v21.0/PNID1/media")
        assert media.json() == {"via": "app", "version": "v21.0"}
        # not a send: the app answers (it has no GET for this path)
        assert (await client.get("/v21.0/PNID1/messages")).status_code in (404, 405)
        assert (await client.post("/v21.0/PNID1/messages/more")).status_code == 404
    assert len(calls) == 2
