"""Runs the stack exactly as `make run` does (`zapstream up`), for end-to-end tests.

Every port is a free loopback port; the data dir is the test's tmp dir. Stopping
sends SIGTERM to the supervisor's pid and waits: the supervisor stops its children.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ingest.samples import dumps, text_webhook
from ingest.signature import sign
from zapstream.brokers.process import free_port
from zapstream.settings import Settings
from zapstream.supervisor.supervisor import worker_web_ports

APP_SECRET = "e2e-app-secret"


def free_ports(n: int, avoid: set[int]) -> int:
    """The first of `n` consecutive free ports, none of them in `avoid`: `zapstream up`
    gives worker i the web port WORKER_WEB_PORT + i - 1, and the embedders the next."""
    while True:
        base = free_port(avoid=avoid)
        if avoid.intersection(range(base, base + n)):
            continue
        try:
            for port in range(base + 1, base + n):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


def taken_port(taken: set[int]) -> int:
    """A free port none of `taken` (ports promised to servers not started yet); it is
    added to `taken`."""
    port = free_port(avoid=taken)
    taken.add(port)
    return port


def new_user() -> str:
    """A random Brazilian-looking wa_id, so that tests never share a user."""
    return f"55{random.randint(10**10, 10**11 - 1)}"


class Stack:
    def __init__(
        self, data_dir: Path, *, broker: str = "tansu", bootstrap: str | None = None, **env: str
    ) -> None:
        self.data_dir = data_dir
        # None of the stack's servers binds before `zapstream up` starts them, so each
        # pick avoids the ones before it (two picks once landed on one port: the API
        # could not bind its port five times over, and the stack did not come up).
        taken: set[int] = set()
        self.webhook_port = taken_port(taken)
        self.sink_port = taken_port(taken)
        self.env = dict(os.environ)
        for key in list(self.env):
            if key.startswith(
                ("KAFKA_", "WHATSAPP_", "GRAPH_", "DEBOUNCE_", "ENGINE", "EMBEDDING_", "ADMIN_")
            ):
                del self.env[key]
        self.env.update(
            {
                "DATA_DIR": str(data_dir),
                "BROKER": broker,
                "WEBHOOK_PORT": str(self.webhook_port),
                "SINK_WEB_PORT": str(self.sink_port),
                "SANDBOX_PORT": str(taken_port(taken)),
                "WHATSAPP_APP_SECRET": APP_SECRET,
                "BROKER_SESSION_TIMEOUT_S": "4",
                "BROKER_HEARTBEAT_INTERVAL_S": "0.3",
                "BROKER_REBALANCE_TIMEOUT_S": "4",
                "BROKER_COMMIT_INTERVAL_S": "0.5",
                "SINK_FLUSH_MS": "200",
                "LOG_FORMAT": "json",
                # An in-doubt send (the worker died between "sending" and "done") is sent
                # again after this wait; tests that assert "no second reply" wait past it
                # (`Sandbox.settle`), so it is short here.
                "SEND_CONFIRM_WAIT_S": "2",
                # No embedder unless a test asks for one (EMBEDDING_WORKERS=1 and a shared
                # EMBEDDING_CACHE_DIR: the int8 model is built once per session).
                "EMBEDDING_WORKERS": "0",
            }
        )
        if bootstrap:
            self.env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        self.env.update(env)
        if "WORKER_WEB_PORT" not in env:
            # the embedders' ports follow the workers'
            n = int(self.env.get("WORKERS", "1")) + int(self.env.get("EMBEDDING_WORKERS", "0"))
            self.env["WORKER_WEB_PORT"] = str(free_ports(n, taken))
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}"

    @property
    def sink_url(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}"

    def worker_urls(self) -> list[str]:
        """Each worker's web root (`/metrics`), as `zapstream up` assigns the ports."""
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            workers=int(self.env.get("WORKERS", "1")),
            worker_web_port=int(self.env["WORKER_WEB_PORT"]),
            sink_web_port=self.sink_port,
            webhook_port=self.webhook_port,
            sandbox_port=int(self.env["SANDBOX_PORT"]),
        )
        return [f"http://127.0.0.1:{port}" for port in worker_web_ports(settings)]

    @property
    def bootstrap(self) -> str:
        """The broker the stack runs (from the webhook's "publisher connected" log)."""
        for line in self.lines:
            m = re.search(r'"bootstrap":\s*"([^"]+)"', line) or re.search(
                r"(?:tansu|kafka) ready at (\S+)", line
            )
            if m:
                return m.group(1)
        raise RuntimeError("the stack has not said which broker it uses yet")

    def start(self, timeout: float = 120.0) -> Stack:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zapstream.cli", "up"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not any("zapstream is up" in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("stack did not come up:\n" + self.output())
            time.sleep(0.1)
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def output(self) -> str:
        return "\n".join(self.lines[-200:])

    def child_pids(self) -> dict[str, int]:
        pids: dict[str, int] = {}
        for line in self.lines:
            m = re.search(r"started (\w+) \(pid (\d+)\)", line) or re.search(
                r"(tansu|kafka) ready at \S+ in \S+ \(pid (\d+)", line
            )
            if m:
                pids[m.group(1)] = int(m.group(2))
        return pids

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        # kept beside the stack's data for a failure's post-mortem (pytest keeps the
        # last runs' temporary folders)
        (self.data_dir / "stack-output.log").write_text(self.output())
        return self.proc.returncode

    def post_text(self, text: str, *, secret: str = APP_SECRET, **kw: Any) -> httpx.Response:
        body = dumps(text_webhook(text, **kw))
        return self.post_raw(body, sign(body, secret))

    def post_raw(self, body: bytes, signature: str | None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if signature is not None:
            headers["x-hub-signature-256"] = signature
        return httpx.post(f"{self.url}/webhook", content=body, headers=headers, timeout=30)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        resp = httpx.post(f"http://127.0.0.1:{self.sink_port}/query", json={"sql": sql}, timeout=30)
        resp.raise_for_status()
        return [tuple(r) for r in resp.json()["rows"]]

    def wait_for_rows(
        self, sql: str, expected: int, timeout: float = 20.0
    ) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        rows: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            rows = self.query(sql)
            if len(rows) >= expected:
                return rows
            time.sleep(0.1)
        return rows


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class Sandbox:
    """The stack's Cloud API sandbox, seen from a test."""

    def __init__(self, stack: Stack) -> None:
        self.url = f"http://127.0.0.1:{stack.env['SANDBOX_PORT']}"
        self.confirm_wait_s = float(stack.env.get("SEND_CONFIRM_WAIT_S", "10"))

    def settle(self) -> None:
        """Wait past the window in which a second copy of a reply could still come: an
        in-doubt send is sent again SEND_CONFIRM_WAIT_S after the worker re-reads it.
        Call it before asserting that something was sent only once."""
        time.sleep(self.confirm_wait_s + 3.0)

    def configure(self, **knobs: Any) -> None:
        httpx.post(f"{self.url}/_sandbox/config", json=knobs, timeout=10).raise_for_status()

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        params = {"to": to} if to else {}
        resp = httpx.get(f"{self.url}/_sandbox/messages", params=params, timeout=10)
        resp.raise_for_status()
        return list(resp.json())

    def texts(self, to: str) -> list[str]:
        return [m["body"]["text"]["body"] for m in self.messages(to) if m["type"] == "text"]

    def stats(self, window_s: float = 1.0) -> dict[str, Any]:
        params = {"window_s": window_s}
        return dict(httpx.get(f"{self.url}/_sandbox/stats", params=params, timeout=10).json())

    def wait_for(
        self, to: str, count: int, timeout: float = 30.0, kind: str = "text"
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [m for m in self.messages(to) if m["type"] == kind]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return found
