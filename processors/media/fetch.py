"""The Graph API's media calls, and one attempt at fetching a media id.

`GET /{version}/{media-id}` (with the access token) answers `url`, `mime_type`,
`sha256`, `file_size`; the `url` is short-lived (minutes) and needs the same bearer
token. The download is streamed into a `PartFile`: nothing larger than a chunk is
held in memory, and it stops as soon as MEDIA_MAX_BYTES is passed.

Errors are the sender's (`retry_policy.classify`: 5xx, 429, timeouts and connection
errors retryable; 4xx permanent), with one difference: a download URL that answers
404/410 has most likely expired, and the next attempt asks Graph for a fresh one, so
that is retryable. Media get their own small connection pool (MEDIA_CONCURRENCY), so
downloads never hold the connections replies are sent through. The token goes in a
header on each request and nowhere else.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from processors.http_clients import create_http_client
from processors.media.jobs import MediaJob, normalize_sha256, valid_media_id
from processors.media.store import MediaStore, StoredFile
from processors.retry_policy import classify
from zapstream.errors import GraphError, GraphPermanentError, GraphTransientError, MediaTooLarge
from zapstream.settings import Settings

log = logging.getLogger("zapstream.media")

CHUNK = 64 * 1024
EXPIRED_URL_STATUSES = frozenset({404, 410})


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """Graph's answer to `GET /{media-id}`."""

    media_id: str
    url: str
    mime_type: str | None
    sha256: str | None
    """Hex (normalized), when Graph gave a well-formed one."""
    file_size: int | None


@dataclass(frozen=True, slots=True)
class Fetched:
    """One successful attempt: the stored file and what Graph said of it."""

    stored: StoredFile
    mime_type: str | None
    downloaded: bool
    """False when the bytes were already on disk (no download made)."""


class MediaClient:
    """Graph media lookups and streamed downloads. Pass `http` to share a client
    (tests: an httpx MockTransport); otherwise one is created and `aclose` closes it."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._base = f"{settings.graph_base_url}/{settings.graph_api_version}"
        self._token = settings.whatsapp_access_token
        self._owns_http = http is None
        self._http = http or create_http_client(
            max_connections=settings.media_concurrency, timeout_s=settings.media_fetch_timeout_s
        )

    def __repr__(self) -> str:
        return f"MediaClient(base={self._base!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    async def lookup(self, media_id: str) -> MediaInfo:
        """`GET /{media-id}`: where to download it, and what Meta says it is."""
        if not valid_media_id(media_id):
            raise GraphPermanentError(f"media id {media_id[:40]!r} is not a Graph id")
        try:
            response = await self._http.get(f"{self._base}/{media_id}", headers=self._headers())
        except Exception as exc:
            raise classify(None, None, {}, exc) from exc
        doc = _json(response)
        if not response.is_success:
            raise _failed("lookup", media_id, response, doc)
        url = doc.get("url") if isinstance(doc, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise GraphPermanentError(f"media {media_id}: lookup answered without a usable url")
        size = doc.get("file_size")
        if isinstance(size, str) and size.isdigit():  # Graph has sent numbers as strings
            size = int(size)
        mime = doc.get("mime_type")
        sha = doc.get("sha256")
        return MediaInfo(
            media_id=media_id,
            url=url,
            mime_type=mime if isinstance(mime, str) else None,
            sha256=normalize_sha256(sha if isinstance(sha, str) else None),
            file_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        )

    async def download(self, info: MediaInfo, store: MediaStore, limit: int) -> StoredFile:
        """Stream `info.url` into the store; the sha256 is checked against Meta's."""
        if info.file_size is not None and info.file_size > limit:
            raise MediaTooLarge(info.media_id, info.file_size, limit)
        try:
            async with self._http.stream("GET", info.url, headers=self._headers()) as response:
                if not response.is_success:
                    await response.aread()
                    raise _failed("download", info.media_id, response, _json(response))
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise MediaTooLarge(info.media_id, int(declared), limit)
                with store.part(info.media_id, limit, info.sha256) as part:
                    async for chunk in response.aiter_bytes(CHUNK):
                        part.write(chunk)
                    return await part.commit()
        except (GraphError, MediaTooLarge):
            raise
        except httpx.HTTPError as exc:  # the connection broke mid-download, a timeout
            raise classify(None, None, {}, exc) from exc


async def fetch_once(job: MediaJob, client: MediaClient, store: MediaStore, limit: int) -> Fetched:
    """One attempt: look the id up, refuse it if too large, download unless these
    bytes are already stored. Raises the typed error of what went wrong."""
    info = await client.lookup(job.media_id)
    if info.file_size is not None and info.file_size > limit:
        raise MediaTooLarge(job.media_id, info.file_size, limit)
    sha = info.sha256 or job.sha256
    if sha is not None and (found := store.find(sha)) is not None:
        return Fetched(found, info.mime_type, downloaded=False)
    if info.sha256 is None and job.sha256 is not None:
        info = MediaInfo(info.media_id, info.url, info.mime_type, job.sha256, info.file_size)
    started = time.perf_counter()
    stored = await client.download(info, store, limit)
    log.info(
        "media stored",
        extra={
            "media_id": job.media_id,
            "message_id": job.message_id,
            "size_bytes": stored.size,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return Fetched(stored, info.mime_type, downloaded=True)


def _failed(step: str, media_id: str, response: httpx.Response, doc: Any) -> GraphError:
    status = response.status_code
    if step == "download" and status in EXPIRED_URL_STATUSES:
        return GraphTransientError(
            f"media {media_id}: download url answered {status} (expired?); a fresh one is asked",
            status_code=status,
        )
    error = classify(
        status, doc if isinstance(doc, dict) else None, response.headers, None, now=time.time()
    )
    log.info(
        "graph media call failed",
        extra={
            "media_id": media_id,
            "step": step,
            "status_code": status,
            "code": error.code,
            "retryable": error.retryable,
        },
    )
    return error


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
