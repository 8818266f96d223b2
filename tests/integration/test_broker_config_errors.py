"""A configuration mistake in KAFKA_BOOTSTRAP_SERVERS must not look like a broker outage.

The real commands run as subprocesses (`python -m zapstream.cli ...`), against an
address no broker can be behind: a host under `.invalid` (never resolves, RFC 2606)
or a loopback port nothing listens on. Mistakes end the process at start with one
line and exit code 2; an outage keeps the webhook up, answering 503, and its log
says where and why, not one line per request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ingest.samples import dumps, text_webhook
from ingest.signature import sign
from zapstream.brokers.process import free_port

SECRET = "config-test-secret"
UNKNOWN = "broker.zapstream.invalid:9092"


def env_for(tmp_path: Path, bootstrap: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "WHATSAPP_", "GRAPH_", "WEBHOOK_"))
    }
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATA_DIR": str(tmp_path),
            "WEBHOOK_PORT": str(free_port()),
            "SINK_WEB_PORT": str(free_port()),
            "WORKER_WEB_PORT": str(free_port()),
            "WHATSAPP_APP_SECRET": SECRET,
            "LOG_FORMAT": "json",
        }
    )
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout only stops a hang (the old behaviour: retrying forever).
    return subprocess.run(
        [sys.executable, "-m", "zapstream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", [["api"], ["worker"], ["sink"], ["topics", "create"]])
def test_an_unknown_host_stops_the_process_at_start_naming_setting_and_address(
    tmp_path: Path, command: list[str]
) -> None:
    done = run_cli(command, env_for(tmp_path, UNKNOWN))
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("configuration error: KAFKA_BOOTSTRAP_SERVERS: host"), done.stderr
    assert UNKNOWN in last
    assert "does not resolve" in last


def test_an_address_without_a_port_stops_the_api_before_it_starts(tmp_path: Path) -> None:
    done = run_cli(["api"], env_for(tmp_path, "localhost"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "configuration error: KAFKA_BOOTSTRAP_SERVERS: 'localhost' has no port;"
        " write host:port, e.g. localhost:9092"
    ]


def test_topics_create_against_a_closed_port_says_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    done = run_cli(["topics", "create"], env_for(tmp_path, f"127.0.0.1:{port}"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: broker unavailable: connection refused to 127.0.0.1:{port}"
    )


class Running:
    """A CLI command in the background; its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zapstream.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def wait_for_line(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout  # only stops a hang
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "exited:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "\n".join(self.lines)
            time.sleep(0.1)

    def stop(self) -> str:
        """SIGTERM by pid, wait; the whole output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return "\n".join(self.lines)


def post_webhook(url: str, text: str) -> int:
    body = dumps(text_webhook(text))
    headers = {"content-type": "application/json", "x-hub-signature-256": sign(body, SECRET)}
    return httpx.post(f"{url}/webhook", content=body, headers=headers, timeout=30).status_code


def test_the_api_stays_up_on_a_closed_port_and_logs_address_and_reason_rate_limited(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = env_for(tmp_path, f"127.0.0.1:{port}")
    refused = f"connection refused to 127.0.0.1:{port}"
    api = Running(["api"], env)
    try:
        # the webhook's own connection attempt has failed and been diagnosed
        api.wait_for_line(f"{refused}; retrying, webhooks get 503")
        url = f"http://127.0.0.1:{env['WEBHOOK_PORT']}"
        assert [post_webhook(url, f"outage {i}") for i in range(10)] == [503] * 10
        assert api.proc.poll() is None
    finally:
        log = api.stop()
    answered_503 = [line for line in log.splitlines() if "answering 503" in line]
    assert 1 <= len(answered_503) < 10, log  # rate-limited, not one line per request
    assert refused in answered_503[0], log
