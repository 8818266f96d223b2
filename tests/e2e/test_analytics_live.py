"""Analytics against the running stack (`zapstream up`), on each broker: while the sink
holds the DuckDB file, `zapstream report` and `GET /dashboard/data` read through it and
agree figure for figure, and `zapstream export --all` writes every table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

from ingest.samples import new_wamid
from tests.support.stack import Stack, new_user
from zapstream.analytics.period import iso

pytestmark = pytest.mark.e2e

TOKEN = "live-admin-token"
USERS, EACH = 3, 2


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"analytics-{broker_kind}"),
        broker=broker_kind,
        ENGINE="echo",
        DEBOUNCE_QUIET_MS="0",
        ADMIN_TOKEN=TOKEN,
    ).start()
    yield s
    assert s.stop() == 0, s.output()


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUCKDB_", "SINK_"))}
    env.update(DATA_DIR=str(stack.data_dir), SINK_WEB_PORT=str(stack.sink_port))
    return subprocess.run(
        [sys.executable, "-m", "zapstream.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_report_dashboard_and_export_read_through_the_running_sink(
    stack: Stack, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    for _ in range(USERS):
        user = new_user()
        for n in range(EACH):
            resp = stack.post_text(f"hello {n}", wa_id=user, message_id=new_wamid())
            assert resp.status_code == 200, resp.text
    replies = USERS * EACH
    read = stack.wait_for_rows(
        "SELECT outbound_id FROM message_delivery WHERE kind = 'text' AND state = 'read'",
        replies, timeout=90,
    )
    assert len(read) == replies, stack.output()
    period = f"from={iso(start)}&to={iso(datetime.now(UTC))}"

    data = httpx.get(
        f"{stack.url}/dashboard/data?{period}",
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60,
    )
    assert data.status_code == 200, data.text
    figures = data.json()
    assert figures["inbound"]["messages"] == replies
    assert figures["inbound"]["active_users"] == USERS
    assert figures["reply_latency"]["answered"] == replies
    assert figures["reply_latency"]["p95_s"] > 0
    assert figures["delivery"]["read"] == replies
    assert figures["delivery"]["read_rate"] == 1.0
    assert httpx.get(f"{stack.url}/dashboard/data", timeout=30).status_code == 401

    frm, to = (p.split("=", 1)[1] for p in period.split("&"))
    report = _cli(stack, "report", "--from", frm, "--to", to, "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout) == figures  # the same figures by both paths

    out = tmp_path / "dump"
    export = _cli(stack, "export", "--all", "--out", str(out))
    assert export.returncode == 0, export.stderr
    assert (out / "messages.parquet").exists()
    con = duckdb.connect()
    try:
        exported = con.execute(
            f"SELECT count(*) FROM read_parquet('{out / 'messages.parquet'}')"
        ).fetchone()
    finally:
        con.close()
    assert exported is not None
    assert exported[0] == stack.query("SELECT count(*) FROM messages")[0][0]
