"""`GET /dashboard` served by the real API (`zapstream api`, uvicorn on a free port) over a
seeded DuckDB file, loaded in headless Chromium: the login form sets the cookie, the
page draws its charts with data and logs no console error; a screenshot is kept. Without
the token the page and its data are refused.

The API starts without a broker (it answers 503 on /webhook until one is back; the
dashboard needs none), and no sink runs, so the report opens the file read-only.
Chromium is Debian's package (`.ci/run` installs it); the test is skipped, loudly,
only when it is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.analytics_seed import seed
from tests.support.headless import Chromium, chromium_path, open_page
from zapstream.brokers.process import free_port, stop_process

TOKEN = "dashboard-test-token"
PERIOD_QUERY = "from=2026-11-02T00:00:00Z&to=2026-11-03T00:00:00Z"


class Api:
    def __init__(self, folder: Path, db: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "api.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DUCKDB_", "SINK_"))}
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nothing there
            WEBHOOK_HOST="127.0.0.1",
            WEBHOOK_PORT=str(self.port),
            DUCKDB_PATH=str(db),
            SINK_WEB_PORT=str(free_port()),  # no sink: the file is read directly
            ADMIN_TOKEN=TOKEN,
            LOG_FORMAT="json",
        )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zapstream.cli", "api"], env=env, stdout=out, stderr=out
            )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    db = tmp_path / "seeded.duckdb"
    seed(db)
    server = Api(tmp_path, db)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_without_the_token_the_dashboard_is_refused(api: Api) -> None:
    page = httpx.get(f"{api.url}/dashboard", timeout=30)
    assert page.status_code == 401
    assert 'action="/dashboard/login"' in page.text
    assert httpx.get(f"{api.url}/dashboard/data?{PERIOD_QUERY}", timeout=30).status_code == 401
    wrong = httpx.get(
        f"{api.url}/dashboard/data", headers={"Authorization": "Bearer wrong"}, timeout=30
    )
    assert wrong.status_code == 401
    right = httpx.get(
        f"{api.url}/dashboard/data?{PERIOD_QUERY}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert right.status_code == 200
    assert right.json()["inbound"]["messages"] == 6


async def test_the_dashboard_draws_its_charts_in_headless_chromium(
    api: Api, tmp_path: Path
) -> None:
    if chromium_path() is None:
        pytest.skip(
            "CHROMIUM IS NOT INSTALLED: the dashboard's browser test did not run "
            "(apt-get install chromium; .ci/run does it on a fresh machine)"
        )
    browser = Chromium(tmp_path / "chromium").start()
    try:
        async with open_page(browser) as page:
            await page.navigate(f"{api.url}/dashboard")
            assert await page.evaluate("!!document.getElementById('login')")  # the 401 form
            await page.evaluate(
                f"document.getElementById('token').value = {TOKEN!r}; "
                "document.getElementById('login').submit(); true"
            )
            await page.wait_for("document.body && document.body.dataset.state !== undefined")
            cookie_visible = await page.evaluate("document.cookie")
            assert "zapstream_dashboard" not in cookie_visible  # HttpOnly

            page.events.clear()  # from here on: the dashboard itself, no error allowed
            await page.navigate(f"{api.url}/dashboard?{PERIOD_QUERY}")
            state = await page.wait_for(
                "['ready', 'error'].includes(document.body.dataset.state) && document.body.dataset.state"
            )
            status = await page.evaluate("document.getElementById('status').textContent")
            assert state == "ready", status
            bars = await page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('.chart')].map("
                "c => [c.id, [...c.querySelectorAll('rect.bar')].filter("
                "r => parseFloat(r.getAttribute('height')) > 0 && parseFloat(r.getAttribute('width')) > 0).length]))"
            )
            tiles = await page.evaluate(
                "[...document.querySelectorAll('.tile')].map(t => t.textContent)"
            )
            shot = tmp_path / "dashboard.png"
            await page.screenshot(shot)
            errors = page.errors()
    finally:
        browser.stop()

    kept = Path(tempfile.gettempdir()) / "zapstream-test-artifacts" / "dashboard.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, kept)
    print(f"dashboard screenshot: {shot} (copy: {kept})")

    assert errors == []
    assert shot.stat().st_size > 10_000
    # every chart has bars: 3 busy hours, 1 day, 4 intents, the delivery funnel, ...
    assert bars["messages-hour"] == 3
    assert bars["users-hour"] == 3
    assert bars["messages-day"] == 1
    assert bars["intents"] == 4
    assert bars["delivery"] >= 5
    assert bars["handoffs"] == 2
    assert bars["reengagements"] == 2
    assert bars["dead-letters"] == 2
    assert bars["processing"] == 2
    assert any(t.startswith("Inbound messages") and t.endswith("6") for t in tiles), tiles
