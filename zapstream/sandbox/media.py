"""The sandbox's media: bytes a test registers, served the way the Graph API serves them.

    POST /_sandbox/media?mime_type=…[&report_size=false]   raw body → {"id", "sha256", "file_size"}
    GET  /_sandbox/media                                    every media id, with its lookups and downloads
    GET  /{version}/{media-id}                              Graph's lookup: url, mime_type, sha256, file_size
    GET  /_sandbox/media/{media-id}?exp=…                   the short-lived download URL (bearer token)

An unknown media id gets Graph's answer for an unknown object (HTTP 400, code 100,
subcode 33); a download URL that expired or names an unknown id gets 404, as Meta's
CDN answers. `report_size=false` leaves `file_size` out of the lookup (so a client's
streaming size guard can be tested). The `media_fail_next` knob (`POST
/_sandbox/config`) makes the next N media requests answer 500.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from zapstream.sandbox.graph import BAD_TOKEN, UNKNOWN_OBJECT, UNKNOWN_PATH, VERSION, CannedError

URL_TTL_S = 300.0
"""Meta's media URLs live 5 minutes."""


@dataclass
class _Media:
    content: bytes
    mime_type: str
    sha256: str
    report_size: bool
    lookups: int = 0
    downloads: int = 0


class MediaShelf:
    """Registered media and their counters. Thread-safe: in-process tests read it while
    uvicorn serves from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._media: dict[str, _Media] = {}

    def add(self, content: bytes, mime_type: str, *, report_size: bool = True) -> dict[str, Any]:
        media_id = str(10**15 + secrets.randbelow(9 * 10**15))
        sha = hashlib.sha256(content).hexdigest()
        with self._lock:
            self._media[media_id] = _Media(content, mime_type, sha, report_size)
        return {"id": media_id, "sha256": sha, "file_size": len(content)}

    def lookup(self, media_id: str) -> _Media | None:
        with self._lock:
            media = self._media.get(media_id)
            if media is not None:
                media.lookups += 1
            return media

    def download(self, media_id: str) -> _Media | None:
        with self._lock:
            media = self._media.get(media_id)
            if media is not None:
                media.downloads += 1
            return media

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": media_id,
                    "mime_type": m.mime_type,
                    "sha256": m.sha256,
                    "file_size": len(m.content),
                    "lookups": m.lookups,
                    "downloads": m.downloads,
                }
                for media_id, m in self._media.items()
            ]

    def reset(self) -> None:
        with self._lock:
            self._media.clear()


def media_router(
    shelf: MediaShelf,
    *,
    authorized: Callable[[Request], bool],
    rejected: Callable[[CannedError], JSONResponse],
    fault: Callable[[], CannedError | None],
) -> APIRouter:
    """The routes above. Include it after every other `/_sandbox/…` GET route and
    before nothing that `GET /{version}/{id}` would shadow."""
    router = APIRouter()

    @router.post("/_sandbox/media")
    async def register(
        request: Request, mime_type: str = "image/jpeg", report_size: bool = True
    ) -> dict[str, Any]:
        return shelf.add(await request.body(), mime_type, report_size=report_size)

    @router.get("/_sandbox/media")
    async def listing() -> list[dict[str, Any]]:
        return shelf.listing()

    @router.get("/_sandbox/media/{media_id}")
    async def download(media_id: str, request: Request, exp: float = 0.0) -> Response:
        if not authorized(request):
            return rejected(BAD_TOKEN)
        if (canned := fault()) is not None:
            return rejected(canned)
        if exp < time.time():
            return Response(status_code=404)
        media = shelf.download(media_id)
        if media is None:
            return Response(status_code=404)
        return Response(media.content, media_type=media.mime_type)

    @router.get("/{version}/{media_id}")
    async def lookup(version: str, media_id: str, request: Request) -> JSONResponse:
        if not authorized(request):
            return rejected(BAD_TOKEN)
        if not VERSION.fullmatch(version):
            return rejected(UNKNOWN_PATH)
        if (canned := fault()) is not None:
            return rejected(canned)
        media = shelf.lookup(media_id)
        if media is None:
            return rejected(UNKNOWN_OBJECT)
        base = str(request.base_url).rstrip("/")
        doc: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "url": f"{base}/_sandbox/media/{media_id}?exp={int(time.time() + URL_TTL_S)}",
            "mime_type": media.mime_type,
            "sha256": media.sha256,
            "id": media_id,
        }
        if media.report_size:
            doc["file_size"] = len(media.content)
        return JSONResponse(doc)

    return router
