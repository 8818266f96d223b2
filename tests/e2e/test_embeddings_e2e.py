"""Messages in → their vectors in DuckDB, once; a paraphrase finds the right message.

The stack as `zapstream up` runs it, with one embedder process and the real model
(all-MiniLM-L6-v2 as int8 ONNX, built once per session into a shared cache folder).
English texts: the default model is English-trained.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.samples import dumps, new_wamid, text_webhook
from ingest.signature import sign
from schemas.topics import Topics
from tests.support.sink_process import committed
from tests.support.stack import APP_SECRET, Stack, new_user, pid_alive
from zapstream.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token"
TEXTS = {
    "cancel": "I want to cancel my order and get my money back.",
    "hours": "What time does your store open on Saturday?",
    "human": "Can I please talk to a real person instead of a bot?",
    "password": "I forgot my password and cannot log in to my account.",
    "weather": "The weather is lovely today, sunny and warm.",
}
PARAPHRASES = {
    "human": "I would like to speak with a human agent",
    "password": "how do I reset my login password",
    "cancel": "please cancel the purchase and refund me",
}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-model-cache")


@pytest.fixture(scope="module")
def stack(
    broker_kind: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"embed-stack-{broker_kind}"),
        broker=broker_kind,
        EMBEDDING_WORKERS="1",
        EMBEDDING_CACHE_DIR=str(model_cache),
        EMBEDDING_LINGER_MS="20",
        ADMIN_TOKEN=ADMIN_TOKEN,
        DEBOUNCE_QUIET_MS="300",
    ).start()
    yield s
    pids = s.child_pids()
    assert s.stop() == 0, s.output()
    alive = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not alive, f"orphans after stop: {alive}"


def wait_for_count(stack: Stack, sql: str, expected: int, timeout: float) -> int:
    """Wait until `sql` (a count) reaches `expected`; the model may still be building."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        count = int(stack.query(sql)[0][0])
        if count >= expected:
            return count
        time.sleep(0.5)
    return count


def test_messages_get_one_vector_each_and_a_paraphrase_finds_the_right_one(stack: Stack) -> None:
    ids: dict[str, str] = {}
    users: dict[str, str] = {}
    bodies: dict[str, bytes] = {}
    for name, text in TEXTS.items():
        ids[name], users[name] = new_wamid(), new_user()
        bodies[name] = dumps(text_webhook(text, wa_id=users[name], message_id=ids[name]))
        assert stack.post_raw(bodies[name], sign(bodies[name], APP_SECRET)).status_code == 200
    listed = ", ".join(f"'{i}'" for i in ids.values())
    count_sql = f"SELECT count(*) FROM embeddings WHERE message_id IN ({listed})"
    got = wait_for_count(stack, count_sql, len(TEXTS), timeout=300)
    assert got == len(TEXTS), stack.output()

    rows = stack.query(
        f"SELECT message_id, model, dim, len(vector), text FROM embeddings WHERE message_id IN ({listed})"
    )
    by_id = {r[0]: r for r in rows}
    for name, text in TEXTS.items():
        _, model, dim, size, stored = by_id[ids[name]]
        assert (model, dim, size, stored) == ("all-MiniLM-L6-v2", 384, 384, text)

    # The same webhook again (Meta redelivers) and a later marker message: still one row.
    assert stack.post_raw(bodies["human"], sign(bodies["human"], APP_SECRET)).status_code == 200
    marker = new_wamid()
    body = dumps(text_webhook("A marker message sent after the redelivery.", message_id=marker))
    assert stack.post_raw(body, sign(body, APP_SECRET)).status_code == 200
    marker_sql = f"SELECT count(*) FROM embeddings WHERE message_id = '{marker}'"
    assert wait_for_count(stack, marker_sql, 1, timeout=120) == 1
    assert stack.query(count_sql) == [(len(TEXTS),)]
    # ... and the embedder acked (committed) what it embedded: a restart reads none again.
    settings = Settings(kafka_bootstrap_servers=stack.bootstrap)
    requests_topic = Topics.from_settings(settings).embeddings
    deadline, done = time.monotonic() + 60, 0
    while time.monotonic() < deadline:
        done = asyncio.run(committed(settings, f"{settings.app_id}-embedder", requests_topic))
        if done >= len(TEXTS) + 1:
            break
        time.sleep(0.5)
    assert done >= len(TEXTS) + 1
    assert stack.query(f"SELECT count(*) FROM embeddings WHERE message_id = '{ids['human']}'") == [
        (1,)
    ]

    # "real person" handed that user to a human: the bot is silent, the text still embedded.
    later = new_wamid()
    body = dumps(text_webhook("My order never arrived.", wa_id=users["human"], message_id=later))
    assert stack.post_raw(body, sign(body, APP_SECRET)).status_code == 200
    later_sql = f"SELECT count(*) FROM embeddings WHERE message_id = '{later}'"
    assert wait_for_count(stack, later_sql, 1, timeout=120) == 1
    intents = stack.wait_for_rows(
        f"SELECT intent FROM turns WHERE message_ids LIKE '%{later}%'", 1, timeout=60
    )
    assert intents == [("handoff_active",)]

    # Search, from the CLI (through the running sink) and from the API.
    env = {**stack.env, "PYTHONPATH": str(ROOT)}
    for name, paraphrase in PARAPHRASES.items():
        out = subprocess.run(
            [sys.executable, "-m", "zapstream.cli", "search", paraphrase, "--limit", "3", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        hits = json.loads(out.stdout)
        assert hits[0]["message_id"] == ids[name], hits
        assert hits[0]["text"] == TEXTS[name]
        assert hits[0]["score"] > hits[1]["score"]
        assert "*" in hits[0]["user_id"]  # masked

    resp = httpx.get(
        f"{stack.url}/search",
        params={"q": PARAPHRASES["human"], "limit": 2},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()[0]["message_id"] == ids["human"]
    assert httpx.get(f"{stack.url}/search", params={"q": "x"}, timeout=30).status_code == 401

    # The embedder's /metrics moved: batches encoded, vectors published.
    port = next(m.group(1) for line in stack.lines if (m := re.search(r"embedder :(\d+)", line)))
    page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    batches = re.search(r"^zapstream_embedding_batch_size_count (\S+)$", page, re.M)
    assert batches is not None, page[:2000]
    assert float(batches.group(1)) >= 1
    assert re.search(
        r'^zapstream_events_published_total\{topic="[^"]*embeddings\.vectors', page, re.M
    )
