"""Inbound media: sha256 forms, paths, the size guard, the sha check, error
classification and retries. Only HTTP is faked (httpx MockTransport); files go to
tmp_path."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.parse import parse_webhook
from processors.media.agent import NO_MEDIA, MediaFetcher, media_request, without_media
from processors.media.fetch import MediaClient, MediaInfo, fetch_once
from processors.media.jobs import (
    MediaJob,
    media_event,
    media_job,
    normalize_sha256,
    relative_path,
    valid_media_id,
)
from processors.media.store import TMP, MediaStore
from processors.ticker import tick_value
from schemas.codec import encode
from schemas.control import control_value
from tests.support.events import message
from zapstream.errors import (
    GraphPermanentError,
    GraphRateLimited,
    GraphTransientError,
    MediaIntegrityError,
    MediaTooLarge,
)
from zapstream.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
TOKEN = "EAAG-media-secret-token"
CONTENT = b"\xff\xd8\xff\xe0 a small jpeg" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()
Handler = Callable[[httpx.Request], httpx.Response]


def settings(tmp_path: Path, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "whatsapp_access_token": TOKEN,
        "graph_api_base_url": "https://graph.test",
        "graph_api_version": "v21.0",
        "data_dir": tmp_path,
        "media_max_bytes": 10_000,
        "media_fetch_max_attempts": 4,
        "media_fetch_backoff_base_s": 0.01,
        "media_fetch_backoff_cap_s": 0.05,
    }
    return Settings(**(values | kw))


def job(media_id: str = "1003383421387256", sha256: str | None = None) -> MediaJob:
    return MediaJob(
        media_id=media_id,
        message_id="wamid.M1",
        user_id="5511987654321",
        phone_number_id="100000000000001",
        media_type="image",
        mime_type="image/jpeg",
        sha256=sha256,
        filename=None,
    )


class Graph:
    """A fake Graph API (lookup + CDN download) that records every request."""

    def __init__(self, content: bytes = CONTENT, *, file_size: int | None = -1) -> None:
        self.content = content
        self.file_size = len(content) if file_size == -1 else file_size
        self.sha256: str | None = hashlib.sha256(content).hexdigest()
        self.requests: list[httpx.Request] = []
        self.lookup_faults: list[httpx.Response] = []
        self.download_faults: list[httpx.Response | Exception] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "graph.test":
            if self.lookup_faults:
                return self.lookup_faults.pop(0)
            doc: dict[str, Any] = {"url": "https://cdn.test/m/1?ext=1", "mime_type": "image/jpeg"}
            if self.sha256 is not None:
                doc["sha256"] = self.sha256
            if self.file_size is not None:
                doc["file_size"] = self.file_size
            return httpx.Response(200, json=doc)
        if self.download_faults:
            fault = self.download_faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        return httpx.Response(200, content=self.content)

    @property
    def downloads(self) -> int:
        return sum(1 for r in self.requests if r.url.host == "cdn.test")


def client(tmp_path: Path, graph: Graph, **kw: Any) -> MediaClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(graph))
    return MediaClient(settings(tmp_path, **kw), http)


def graph_error(status: int, code: int, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": "boom", "type": "OAuthException", "code": code}}
    return httpx.Response(status, json=body, headers=headers)


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- pure ------------------------------------------------------------------------------


def test_sha256_is_read_as_hex_or_as_the_webhooks_base64() -> None:
    raw = hashlib.sha256(b"x").digest()
    assert normalize_sha256(raw.hex().upper()) == raw.hex()
    assert normalize_sha256(base64.b64encode(raw).decode()) == raw.hex()
    assert normalize_sha256(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw.hex()
    assert normalize_sha256(base64.b64encode(b"short").decode()) is None
    for junk in (None, "", "not a hash", "zz" * 32):
        assert normalize_sha256(junk) is None


def test_bytes_live_under_the_first_two_hex_digits_of_their_sha256() -> None:
    assert relative_path(SHA) == f"{SHA[:2]}/{SHA}"
    for bad in ("../etc/passwd", SHA.upper(), SHA[:-1]):
        with pytest.raises(ValueError, match="sha256"):
            relative_path(bad)


def test_only_ids_that_cannot_change_the_url_path_are_graph_media_ids() -> None:
    assert valid_media_id("1003383421387256")
    for bad in ("", "..", "../me", "a/b", "1?x=1", "1#f", "%2e%2e", "1 2", "x" * 200):
        assert not valid_media_id(bad), bad


def test_image_audio_video_document_and_sticker_messages_are_media_jobs() -> None:
    jobs = {}
    for name in ("image", "audio_voice", "video", "document", "sticker_animated"):
        body = json.loads((FIXTURES / f"message_{name}.json").read_bytes())
        (msg,) = parse_webhook(body, msg_time()).messages
        jobs[msg.type] = media_job(msg)
    assert set(jobs) == {"image", "audio", "video", "document", "sticker"}
    image = jobs["image"]
    assert image is not None
    assert image.media_id == "1003383421387256"
    assert image.sha256 == base64.b64decode("HgRMv0LrCoLXZ2bXgGo5W0hSFBoAJKUOQVwIPa5RXEo=").hex()
    assert all(j is not None and j.media_id for j in jobs.values())
    assert media_job(message(1)) is None


def test_a_message_without_media_is_recognised_without_decoding_it() -> None:
    assert without_media(encode(message(1)))
    body = json.loads((FIXTURES / "message_image.json").read_bytes())
    (msg,) = parse_webhook(body, msg_time()).messages
    assert not without_media(encode(msg))
    # neither a caption nor a nested key can pass a media message off as text
    assert msg.media is not None
    tricky = msg.model_copy(
        update={
            "text": '"media":null',
            "media": msg.media.model_copy(update={"caption": '"media":null'}),
            "referral": {"media": None},
        }
    )
    assert not without_media(encode(tricky))
    assert NO_MEDIA in encode(tricky)


def test_only_media_messages_are_forwarded_for_fetching() -> None:
    body = json.loads((FIXTURES / "message_image.json").read_bytes())
    (image,) = parse_webhook(body, msg_time()).messages
    forwarded = media_request(encode(image))
    assert forwarded is not None
    assert forwarded.media_id == "1003383421387256"
    for value in (
        encode(message(1)),
        tick_value(1.0),
        control_value("reengage", 1.0),
        b"{not json",
        b"",
        None,
    ):
        assert media_request(value) is None


def test_only_a_stored_report_has_a_path() -> None:
    at = msg_time()
    stored = media_event(job(), "stored", at=at, size_bytes=3, sha256=SHA)
    refused = media_event(job(), "refused", at=at, reason="too big")
    assert stored.path == relative_path(SHA)
    assert (refused.path, refused.reason) == (None, "too big")


# --- the store -------------------------------------------------------------------------


async def test_a_complete_download_lands_at_its_sha256_path_once(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    with store.part("1", 10_000, SHA) as part:
        part.write(CONTENT[:100])
        part.write(CONTENT[100:])
        first = await part.commit()
    assert (tmp_path / first.path).read_bytes() == CONTENT
    assert first.size == len(CONTENT)
    os.utime(tmp_path / first.path, (1_000_000, 1_000_000))
    with store.part("2", 10_000, None) as part:  # the same bytes under another media id
        part.write(CONTENT)
        again = await part.commit()
    assert again.path == first.path
    assert again.stored_at.timestamp() == 1_000_000  # the first file was kept
    assert files(tmp_path) == [tmp_path / first.path]
    assert store.find(SHA) == again


async def test_bytes_past_the_limit_are_refused_and_leave_no_file(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    with store.part("1", 1000, None) as part:
        part.write(b"x" * 600)
        with pytest.raises(MediaTooLarge):
            part.write(b"x" * 600)
    assert files(tmp_path) == []


async def test_bytes_that_are_not_metas_are_not_stored(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    with store.part("1", 10_000, SHA) as part:
        part.write(b"truncated")
        with pytest.raises(MediaIntegrityError) as info:
            await part.commit()
    assert info.value.retryable
    assert files(tmp_path) == []


def test_temp_files_left_by_a_crash_are_pruned_after_an_hour(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    (tmp_path / TMP).mkdir()
    old, new = tmp_path / TMP / "a.part", tmp_path / TMP / "b.part"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.prune_parts(time.time()) == 1
    assert files(tmp_path) == [new]


def test_files_past_the_retention_are_deleted_and_the_rest_kept(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    old_sha, new_sha = hashlib.sha256(b"old").hexdigest(), SHA
    for sha, data in ((old_sha, b"old"), (new_sha, CONTENT)):
        (tmp_path / sha[:2]).mkdir(exist_ok=True)
        (tmp_path / relative_path(sha)).write_bytes(data)
    (tmp_path / TMP).mkdir()
    (tmp_path / TMP / "x.part").write_bytes(b"in progress")
    now = time.time()
    for path in files(tmp_path):
        os.utime(path, (now - 100, now - 100))
    os.utime(tmp_path / relative_path(new_sha), (now, now))
    assert store.prune_older_than(now, 50) == (1, 3)
    assert store.find(old_sha) is None
    assert store.find(new_sha) is not None
    assert (tmp_path / TMP / "x.part").exists()  # downloads in progress are not touched here


# --- Graph calls -----------------------------------------------------------------------


async def test_a_media_id_is_looked_up_and_downloaded_with_the_token(tmp_path: Path) -> None:
    graph = Graph()
    media = client(tmp_path, graph)
    fetched = await fetch_once(job(), media, MediaStore(tmp_path / "m"), 10_000)
    assert fetched.downloaded
    assert (tmp_path / "m" / relative_path(SHA)).read_bytes() == CONTENT
    assert [str(r.url) for r in graph.requests] == [
        "https://graph.test/v21.0/1003383421387256",
        "https://cdn.test/m/1?ext=1",
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in graph.requests)
    again = await fetch_once(job(), media, MediaStore(tmp_path / "m"), 10_000)
    assert not again.downloaded
    assert graph.downloads == 1


async def test_a_size_graph_states_over_the_limit_is_refused_before_any_download(
    tmp_path: Path,
) -> None:
    graph = Graph(file_size=20_000)
    with pytest.raises(MediaTooLarge) as info:
        await fetch_once(job(), client(tmp_path, graph), MediaStore(tmp_path), 10_000)
    assert info.value.size == 20_000
    assert graph.downloads == 0


async def test_an_unstated_size_is_guarded_while_streaming(tmp_path: Path) -> None:
    graph = Graph(b"z" * 50_000, file_size=None)
    with pytest.raises(MediaTooLarge):
        await fetch_once(job(), client(tmp_path, graph), MediaStore(tmp_path), 10_000)
    assert files(tmp_path) == []


async def test_a_download_that_is_not_metas_bytes_is_a_retryable_error(tmp_path: Path) -> None:
    graph = Graph()
    graph.sha256 = "00" * 32
    with pytest.raises(MediaIntegrityError):
        await fetch_once(job(), client(tmp_path, graph), MediaStore(tmp_path), 10_000)
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (graph_error(500, 131000), GraphTransientError),
        (graph_error(503, 2), GraphTransientError),
        (graph_error(429, 130429, {"Retry-After": "3"}), GraphRateLimited),
        (graph_error(400, 100), GraphPermanentError),
        (graph_error(401, 190), GraphPermanentError),
        (httpx.Response(200, json={"id": "1"}), GraphPermanentError),  # no url
    ],
)
async def test_lookup_failures_are_classified(
    tmp_path: Path, fault: httpx.Response, error: type[Exception]
) -> None:
    graph = Graph()
    graph.lookup_faults.append(fault)
    with pytest.raises(error):
        await fetch_once(job(), client(tmp_path, graph), MediaStore(tmp_path), 10_000)


@pytest.mark.parametrize(
    ("fault", "retryable"),
    [
        (httpx.Response(404), True),  # the short-lived URL expired: ask for a fresh one
        (httpx.Response(500), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("cut"), True),
        (graph_error(401, 190), False),
        (httpx.Response(403), False),
    ],
)
async def test_download_failures_are_classified(
    tmp_path: Path, fault: httpx.Response | Exception, retryable: bool
) -> None:
    graph = Graph()
    graph.download_faults.append(fault)
    with pytest.raises((GraphTransientError, GraphPermanentError)) as info:
        await fetch_once(job(), client(tmp_path, graph), MediaStore(tmp_path), 10_000)
    assert info.value.retryable is retryable
    assert files(tmp_path) == []


async def test_an_id_that_is_not_a_graph_id_is_refused_without_a_request(tmp_path: Path) -> None:
    graph = Graph()
    with pytest.raises(GraphPermanentError):
        await client(tmp_path, graph).lookup("../../me/accounts")
    assert graph.requests == []


async def test_the_lookups_sha256_wins_and_the_webhooks_is_used_when_graph_gives_none(
    tmp_path: Path,
) -> None:
    graph = Graph()
    graph.sha256 = None
    with pytest.raises(MediaIntegrityError):  # the webhook said other bytes
        await fetch_once(
            job(sha256="11" * 32), client(tmp_path, graph), MediaStore(tmp_path), 10**6
        )
    fetched = await fetch_once(
        job(sha256=SHA), client(tmp_path, graph), MediaStore(tmp_path), 10**6
    )
    assert fetched.stored.sha256 == SHA


def test_media_info_is_plain_data() -> None:
    info = MediaInfo("1", "https://cdn.test/1", "image/jpeg", SHA, 3)
    assert info.file_size == 3


# --- retries -----------------------------------------------------------------------------


def fetcher(tmp_path: Path, graph: Graph, sleeps: list[float], **kw: Any) -> MediaFetcher:
    s = settings(tmp_path, **kw)

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    return MediaFetcher(s, client(tmp_path, graph, **kw), MediaStore(tmp_path / "m"), sleep=sleep)


async def test_5xx_and_timeouts_are_retried_with_backoff_then_stored(tmp_path: Path) -> None:
    graph, sleeps = Graph(), list[float]()
    graph.lookup_faults.append(graph_error(500, 131000))
    graph.download_faults.append(httpx.ReadTimeout("slow"))
    report, _ = await fetcher(tmp_path, graph, sleeps).resolve(job())
    assert (report.status, report.attempts, report.sha256) == ("stored", 3, SHA)
    assert len(sleeps) == 2
    assert report.path is not None
    assert (tmp_path / "m" / report.path).read_bytes() == CONTENT


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    graph, sleeps = Graph(), list[float]()
    graph.lookup_faults.append(graph_error(429, 130429, {"Retry-After": "2"}))
    report, _ = await fetcher(tmp_path, graph, sleeps).resolve(job())
    assert report.status == "stored"
    assert sleeps[0] >= 2


async def test_a_4xx_fails_at_once_with_its_reason(tmp_path: Path) -> None:
    graph, sleeps = Graph(), list[float]()
    graph.lookup_faults.append(graph_error(400, 100))
    report, transient = await fetcher(tmp_path, graph, sleeps).resolve(job())
    assert (report.status, report.attempts, transient, sleeps) == ("failed", 1, False, [])
    assert report.reason is not None
    assert "Graph API error 100" in report.reason


async def test_a_graph_that_keeps_failing_fails_after_the_attempts(tmp_path: Path) -> None:
    graph, sleeps = Graph(), list[float]()
    graph.lookup_faults.extend(graph_error(500, 131000) for _ in range(10))
    report, transient = await fetcher(tmp_path, graph, sleeps).resolve(job())
    assert (report.status, report.attempts, transient) == ("failed", 4, True)
    assert len(sleeps) == 3


async def test_oversize_is_refused_not_retried(tmp_path: Path) -> None:
    graph, sleeps = Graph(b"y" * 20_000), list[float]()
    report, _ = await fetcher(tmp_path, graph, sleeps).resolve(job())
    assert (report.status, report.size_bytes, report.path) == ("refused", 20_000, None)
    assert report.reason is not None
    assert "MEDIA_MAX_BYTES" in report.reason
    assert graph.downloads == 0
    assert sleeps == []


async def test_bytes_already_stored_are_reported_without_any_graph_call(tmp_path: Path) -> None:
    graph, sleeps = Graph(), list[float]()
    first, _ = await fetcher(tmp_path, graph, sleeps).resolve(job(sha256=SHA))
    calls = len(graph.requests)
    again, _ = await fetcher(tmp_path, graph, sleeps).resolve(job(sha256=SHA))
    assert len(graph.requests) == calls == 2
    assert again.status == "stored"
    assert again.attempts == 0
    # the same row as the first report: the file's own time, not the time of asking
    assert again.model_dump(exclude={"attempts"}) == first.model_dump(exclude={"attempts"})


async def test_the_token_is_never_in_a_log_line_or_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph, sleeps = Graph(), list[float]()
    graph.lookup_faults.append(graph_error(500, 131000))
    graph.lookup_faults.append(graph_error(401, 190))
    media = fetcher(tmp_path, graph, sleeps)
    report, _ = await media.resolve(job())
    assert TOKEN not in repr(media.client)
    assert report.reason is not None
    assert TOKEN not in report.reason
    logged = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    assert TOKEN not in logged


def msg_time() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
