"""The walking skeleton end to end, started the way `make run` starts it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.samples import dumps, new_wamid, text_webhook
from ingest.signature import sign
from tests.support.stack import APP_SECRET, Stack, pid_alive

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp(f"stack-{broker_kind}"), broker=broker_kind).start()
    yield s
    pids = s.child_pids()
    assert s.stop() == 0, s.output()
    alive = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not alive, f"orphans after stop: {alive}"


def published(stack: Stack) -> float:
    """Inbound messages the webhook published. (Status webhooks for earlier tests'
    replies may still arrive from the sandbox meanwhile: they are not counted.)"""
    text = httpx.get(f"{stack.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("zapstream_events_published_total{") and "messages.inbound" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_signed_webhook_lands_in_duckdb(stack: Stack) -> None:
    wamid = new_wamid()
    resp = stack.post_text("olá, tudo bem?", message_id=wamid, wa_id="5511912345678")
    assert resp.status_code == 200, resp.text
    rows = stack.wait_for_rows(
        f"SELECT user_id, wa_id, type, text FROM messages WHERE message_id = '{wamid}'", 1
    )
    assert rows == [("5511912345678", "5511912345678", "text", "olá, tudo bem?")]


def test_the_same_webhook_delivered_three_times_makes_one_row(stack: Stack) -> None:
    body = dumps(text_webhook("repeat", message_id=(wamid := new_wamid())))
    signature = sign(body, APP_SECRET)
    for _ in range(3):
        assert stack.post_raw(body, signature).status_code == 200
    marker = new_wamid()
    assert stack.post_text("after", message_id=marker).status_code == 200
    stack.wait_for_rows(f"SELECT 1 FROM messages WHERE message_id = '{marker}'", 1)
    assert stack.query(f"SELECT count(*) FROM messages WHERE message_id = '{wamid}'") == [(1,)]


def test_a_bad_signature_is_401_and_publishes_nothing(stack: Stack) -> None:
    before = published(stack)
    body = dumps(text_webhook("forged", message_id=(wamid := new_wamid())))
    assert stack.post_raw(body, sign(body, "not-the-secret")).status_code == 401
    assert stack.post_raw(body, None).status_code == 401
    assert stack.post_raw(body + b" ", sign(body, APP_SECRET)).status_code == 401
    assert published(stack) == before
    marker = new_wamid()
    assert stack.post_text("marker", message_id=marker).status_code == 200
    stack.wait_for_rows(f"SELECT 1 FROM messages WHERE message_id = '{marker}'", 1)
    assert stack.query(f"SELECT count(*) FROM messages WHERE message_id = '{wamid}'") == [(0,)]


def test_bad_bodies_get_clear_errors(stack: Stack) -> None:
    not_json = b"{this is not json"
    resp = stack.post_raw(not_json, sign(not_json, APP_SECRET))
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_json"
    huge = b'{"x": "' + b"a" * (4 * 1024 * 1024) + b'"}'
    resp = stack.post_raw(huge, sign(huge, APP_SECRET))
    assert resp.status_code == 413
    assert resp.json()["error"] == "payload_too_large"


def test_a_signed_body_of_unknown_shape_is_kept_raw(stack: Stack) -> None:
    body = json.dumps(
        {"object": "page", "entry": [{"id": "1", "marker": (m := new_wamid())}]}
    ).encode()
    assert stack.post_raw(body, sign(body, APP_SECRET)).status_code == 200
    rows = stack.wait_for_rows(
        f"SELECT reason FROM unrecognized_webhooks WHERE raw::VARCHAR LIKE '%{m}%'", 1
    )
    assert len(rows) == 1


def test_meta_verification_handshake(stack: Stack) -> None:
    ok = httpx.get(
        f"{stack.url}/webhook",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "dev-verify-token",
            "hub.challenge": "1158201444",
        },
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    bad = httpx.get(
        f"{stack.url}/webhook",
        params={"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "x"},
    )
    assert bad.status_code == 403


def test_health_readiness_and_metrics(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{stack.url}/readyz").status_code == 200
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert 'zapstream_webhook_requests_total{outcome="accepted"}' in metrics
    assert "zapstream_webhook_latency_seconds_bucket" in metrics


def test_zapstream_db_reads_through_the_running_sink(stack: Stack, tmp_path: Path) -> None:
    import subprocess
    import sys

    marker = new_wamid()
    assert stack.post_text("db check", message_id=marker).status_code == 200
    stack.wait_for_rows(f"SELECT 1 FROM messages WHERE message_id = '{marker}'", 1)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "zapstream.cli",
            "db",
            "--json",
            f"SELECT text FROM messages WHERE message_id = '{marker}'",
        ],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"text": "db check"}]
