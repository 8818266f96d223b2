"""The media agent's Graph calls against the real sandbox over HTTP: lookup, the
short-lived download URL, Graph's errors, the injected 500s, the download count."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processors.media.agent import MediaFetcher
from processors.media.fetch import MediaClient
from processors.media.jobs import MediaJob
from processors.media.store import MediaStore
from tests.integration.test_sandbox import Served
from zapstream.errors import GraphPermanentError
from zapstream.sandbox.app import SandboxConfig, create_sandbox_app
from zapstream.settings import Settings

TOKEN = "sandbox-media-token"


class MediaSandbox:
    def __init__(self, url: str) -> None:
        self.url = url

    def settings(self, tmp_path: Path, **kw: Any) -> Settings:
        values: dict[str, Any] = {
            "_env_file": None,
            "graph_api_base_url": self.url,
            "whatsapp_access_token": TOKEN,
            "data_dir": tmp_path,
            "media_fetch_backoff_base_s": 0.01,
            "media_fetch_backoff_cap_s": 0.05,
        }
        return Settings(**(values | kw))

    def register(self, content: bytes, **params: Any) -> str:
        response = httpx.post(f"{self.url}/_sandbox/media", content=content, params=params)
        response.raise_for_status()
        assert response.json()["sha256"] == hashlib.sha256(content).hexdigest()
        return str(response.json()["id"])

    def counts(self, media_id: str) -> tuple[int, int]:
        listing = httpx.get(f"{self.url}/_sandbox/media").json()
        (found,) = [m for m in listing if m["id"] == media_id]
        return found["lookups"], found["downloads"]

    def configure(self, **knobs: Any) -> None:
        httpx.post(f"{self.url}/_sandbox/config", json=knobs).raise_for_status()


@pytest.fixture
def sandbox() -> Iterator[MediaSandbox]:
    config = SandboxConfig(
        access_token=TOKEN,
        app_secret="x",
        phone_number_ids=frozenset({"1"}),
        webhook_url=None,
    )
    with Served(create_sandbox_app(config)) as served:
        yield MediaSandbox(served.url)


def job(media_id: str, sha256: str | None = None) -> MediaJob:
    return MediaJob(media_id, "wamid.1", "5511987654321", "1", "image", "image/png", sha256, None)


async def resolve(sandbox: MediaSandbox, tmp_path: Path, j: MediaJob, **kw: Any) -> Any:
    settings = sandbox.settings(tmp_path, **kw)
    client = MediaClient(settings)
    try:
        fetcher = MediaFetcher(settings, client, MediaStore(settings.resolved_media_dir))
        return await fetcher.resolve(j)
    finally:
        await client.aclose()


async def test_registered_media_is_stored_once_under_its_sha256(
    sandbox: MediaSandbox, tmp_path: Path
) -> None:
    content = b"\x89PNG sandbox image" * 50
    sha = hashlib.sha256(content).hexdigest()
    media_id = sandbox.register(content, mime_type="image/png")
    report, _ = await resolve(sandbox, tmp_path, job(media_id))
    assert (report.status, report.sha256, report.size_bytes, report.mime_type) == (
        "stored",
        sha,
        len(content),
        "image/png",
    )
    assert (tmp_path / "media" / sha[:2] / sha).read_bytes() == content
    again, _ = await resolve(sandbox, tmp_path, job(media_id))  # no webhook sha: one lookup
    assert again.path == report.path
    with_sha, _ = await resolve(sandbox, tmp_path, job(media_id, sha))  # none at all
    assert with_sha.attempts == 0
    assert sandbox.counts(media_id) == (2, 1)


async def test_an_unknown_media_id_gets_graphs_unknown_object_error(
    sandbox: MediaSandbox, tmp_path: Path
) -> None:
    client = MediaClient(sandbox.settings(tmp_path))
    with pytest.raises(GraphPermanentError) as info:
        await client.lookup("999")
    await client.aclose()
    assert (info.value.status_code, info.value.code, info.value.subcode) == (400, 100, 33)
    report, transient = await resolve(sandbox, tmp_path, job("999"))
    assert (report.status, report.attempts, transient) == ("failed", 1, False)


async def test_injected_500s_are_retried_then_the_media_is_stored(
    sandbox: MediaSandbox, tmp_path: Path
) -> None:
    media_id = sandbox.register(b"retry me")
    sandbox.configure(media_fail_next=2)
    report, _ = await resolve(sandbox, tmp_path, job(media_id))
    assert (report.status, report.attempts) == ("stored", 3)
    assert sandbox.counts(media_id) == (1, 1)


async def test_media_of_an_unstated_size_is_refused_while_downloading(
    sandbox: MediaSandbox, tmp_path: Path
) -> None:
    media_id = sandbox.register(b"x" * 5000, report_size="false")
    report, _ = await resolve(sandbox, tmp_path, job(media_id), media_max_bytes=1000)
    assert report.status == "refused"
    assert "MEDIA_MAX_BYTES (1000)" in (report.reason or "")
    assert not any(p.is_file() for p in (tmp_path / "media").rglob("*"))


def test_the_download_url_needs_the_token_and_expires(sandbox: MediaSandbox) -> None:
    media_id = sandbox.register(b"secret picture")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = httpx.get(f"{sandbox.url}/v21.0/{media_id}", headers=auth).json()["url"]
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=auth).content == b"secret picture"
    expired = url.split("?")[0] + f"?exp={int(time.time()) - 1}"
    assert httpx.get(expired, headers=auth).status_code == 404
