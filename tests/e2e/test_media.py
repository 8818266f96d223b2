"""Inbound media end to end: a signed image webhook → the media agent → the sandbox's
Graph media endpoints → the bytes under MEDIA_DIR and one `media` row in DuckDB, on
each broker, with the stack started as `make run` does."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.samples import dumps, new_wamid, text_webhook
from ingest.signature import sign
from tests.support.stack import APP_SECRET, Sandbox, Stack, new_user

pytestmark = pytest.mark.e2e

MAX_BYTES = 64_000


@pytest.fixture(scope="module")
def media_stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"media-{broker_kind}"),
        broker=broker_kind,
        ENGINE="echo",
        DEBOUNCE_QUIET_MS="0",
        MEDIA_MAX_BYTES=str(MAX_BYTES),
        MEDIA_FETCH_BACKOFF_BASE_S="0.1",
        MEDIA_FETCH_BACKOFF_CAP_S="0.5",
        # the pruning timer runs (every second) and leaves fresh files alone
        MEDIA_RETENTION_S="86400",
        MEDIA_PRUNE_INTERVAL_S="1",
    ).start()
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture
def sandbox(media_stack: Stack) -> Iterator[Sandbox]:
    sb = Sandbox(media_stack)
    yield sb
    sb.configure(media_fail_next=0)


def register(sandbox: Sandbox, content: bytes, mime_type: str = "image/jpeg") -> str:
    response = httpx.post(
        f"{sandbox.url}/_sandbox/media", content=content, params={"mime_type": mime_type}
    )
    response.raise_for_status()
    return str(response.json()["id"])


def downloads(sandbox: Sandbox, media_id: str) -> tuple[int, int]:
    """(lookups, downloads) the sandbox served for this media id."""
    listing = httpx.get(f"{sandbox.url}/_sandbox/media", timeout=10).json()
    (found,) = [m for m in listing if m["id"] == media_id]
    return found["lookups"], found["downloads"]


def post_media(
    stack: Stack,
    user: str,
    media_id: str,
    content: bytes | None,
    *,
    message_id: str | None = None,
    kind: str = "image",
) -> str:
    """An image (or `kind`) message as Meta sends it; its sha256 in base64, as in
    webhooks (None: no sha256 in the webhook)."""
    message_id = message_id or new_wamid()
    body: dict[str, Any] = text_webhook("", wa_id=user, message_id=message_id)
    item = body["entry"][0]["changes"][0]["value"]["messages"][0]
    del item["text"]
    item["type"] = kind
    obj: dict[str, Any] = {"id": media_id, "mime_type": "image/jpeg"}
    if content is not None:
        obj["sha256"] = base64.b64encode(hashlib.sha256(content).digest()).decode()
    item[kind] = obj
    raw = dumps(body)
    response = stack.post_raw(raw, sign(raw, APP_SECRET))
    assert response.status_code == 200, response.text
    return message_id


def media_rows(stack: Stack, media_id: str, expected: int = 1) -> list[tuple[Any, ...]]:
    return stack.wait_for_rows(
        "SELECT status, sha256, size_bytes, path, mime_type, reason, attempts FROM media "
        f"WHERE media_id = '{media_id}'",
        expected,
        timeout=60,
    )


def stored_files(stack: Stack) -> dict[str, bytes]:
    root = stack.data_dir / "media"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".tmp" not in p.parts
    }


def test_an_image_is_stored_under_its_sha256_once_even_when_redelivered(
    media_stack: Stack, sandbox: Sandbox
) -> None:
    user = new_user()
    content = os.urandom(20_000)
    sha = hashlib.sha256(content).hexdigest()
    media_id = register(sandbox, content)
    message_id = post_media(media_stack, user, media_id, content)
    post_media(media_stack, user, media_id, content, message_id=message_id)  # Meta retried
    rows = media_rows(media_stack, media_id)
    assert rows == [("stored", sha, len(content), f"{sha[:2]}/{sha}", "image/jpeg", None, 1)]
    path = Path(media_stack.data_dir / "media" / sha[:2] / sha)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    # Redelivered once more after it was stored; a marker media message of the same user
    # behind it shows the media agent has handled the redelivery (one lane per user).
    post_media(media_stack, user, media_id, content, message_id=message_id)
    marker_content = os.urandom(1000)
    marker = register(sandbox, marker_content)
    post_media(media_stack, user, marker, marker_content)
    assert media_rows(media_stack, marker)[0][0] == "stored"
    assert downloads(sandbox, media_id) == (1, 1)
    assert media_stack.query(f"SELECT count(*) FROM media WHERE media_id = '{media_id}'") == [(1,)]
    assert media_stack.query(
        f"SELECT count(*) FROM messages WHERE message_id = '{message_id}'"
    ) == [(1,)]


def test_oversize_media_is_refused_with_its_reason_and_leaves_no_file(
    media_stack: Stack, sandbox: Sandbox
) -> None:
    user = new_user()
    content = os.urandom(MAX_BYTES + 1)
    media_id = register(sandbox, content, "video/mp4")
    post_media(media_stack, user, media_id, content, kind="video")
    (row,) = media_rows(media_stack, media_id)
    status, _, size, path, _, reason, _ = row
    assert (status, size, path) == ("refused", MAX_BYTES + 1, None)
    assert f"over MEDIA_MAX_BYTES ({MAX_BYTES})" in reason
    assert downloads(sandbox, media_id) == (1, 0)
    sha = hashlib.sha256(content).hexdigest()
    assert not (media_stack.data_dir / "media" / sha[:2] / sha).exists()


def test_graph_failing_is_retried_then_the_media_is_stored(
    media_stack: Stack, sandbox: Sandbox
) -> None:
    user = new_user()
    content = os.urandom(5000)
    media_id = register(sandbox, content, "application/pdf")
    sandbox.configure(media_fail_next=3)
    post_media(media_stack, user, media_id, None, kind="document")
    (row,) = media_rows(media_stack, media_id)
    assert (row[0], row[1], row[6]) == ("stored", hashlib.sha256(content).hexdigest(), 4)
    assert sandbox.stats()["errors"].get("131000", 0) >= 3


def test_an_unknown_media_id_fails_with_graphs_reason_and_is_dead_lettered(
    media_stack: Stack, sandbox: Sandbox
) -> None:
    user = new_user()
    post_media(media_stack, user, "4040404040", None)
    (row,) = media_rows(media_stack, "4040404040")
    assert (row[0], row[6]) == ("failed", 1)
    assert "Graph API error 100" in row[5]
    letters = media_stack.wait_for_rows(
        "SELECT error_type, retryable, reason FROM processing_dead_letters "
        f"WHERE stage = 'media' AND user_id = '{user}'",
        1,
        timeout=30,
    )
    assert letters[0][:2] == ("MediaFetchFailed", False)
    assert "Graph API error 100" in letters[0][2]


def test_media_sent_while_the_worker_is_killed_are_all_stored_and_answered(
    media_stack: Stack, sandbox: Sandbox
) -> None:
    """converse and the media agents read the same inbound records: a worker SIGKILL
    mid-stream loses neither a reply nor a media file."""
    users = [new_user() for _ in range(4)]
    media: dict[str, bytes] = {}
    plan: list[tuple[str, str]] = []
    for user in users:
        for _ in range(3):
            content = os.urandom(3000)
            media_id = register(sandbox, content)
            media[media_id] = content
            plan.append((user, media_id))

    def send(user: str) -> None:
        for who, media_id in plan:
            if who == user:
                post_media(media_stack, user, media_id, media[media_id])

    worker = media_stack.child_pids()["worker"]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(send, u) for u in users]
        time.sleep(0.3)
        os.kill(worker, signal.SIGKILL)
        for f in futures:
            f.result()
    for media_id, content in media.items():
        sha = hashlib.sha256(content).hexdigest()
        rows = media_rows(media_stack, media_id)
        if [r[:2] for r in rows] != [("stored", sha)]:
            (media_stack.data_dir / "full-output.log").write_text("\n".join(media_stack.lines))
            os.kill(media_stack.child_pids()["worker"], signal.SIGUSR1)  # tasks and offsets
            time.sleep(2)
            (media_stack.data_dir / "full-output.log").write_text("\n".join(media_stack.lines))
        assert [r[:2] for r in rows] == [("stored", sha)], (rows, media_stack.output()[-6000:])
        assert (media_stack.data_dir / "media" / sha[:2] / sha).read_bytes() == content
    for user in users:
        assert len(sandbox.wait_for(user, 3, timeout=90)) == 3, media_stack.output()[-6000:]
    sandbox.settle()
    for user in users:
        assert sandbox.texts(user) == ["echo: image"] * 3
