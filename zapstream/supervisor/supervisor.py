"""`zapstream up`: one supervisor for the whole pipeline.

Starts, in order: the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the
topics, the Cloud API sandbox (unless GRAPH_API_BASE_URL is set), the DuckDB sink,
the worker(s) and the webhook API. Children's output is prefixed with their name.
Ctrl-C / SIGTERM stops every child in reverse order, by process id, and waits for
each (SIGKILL after a grace period): no orphan broker, no orphan worker. When a
child dies on its own the supervisor stops the rest and exits non-zero, saying who.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

import httpx

from schemas.topics import all_topic_specs
from zapstream.brokers.embedded import EmbeddedBroker
from zapstream.brokers.factory import make_broker
from zapstream.brokers.process import stop_process
from zapstream.errors import ConfigurationError, ZapstreamError
from zapstream.kafka_admin import ensure_topics_sync
from zapstream.kafka_clients import detect_idempotence
from zapstream.kafka_diagnosis import check_broker_sync
from zapstream.run_sync import run_sync
from zapstream.settings import Settings

COLORS = ["36", "33", "35", "32", "34", "31"]


MAX_RESTARTS_PER_MINUTE = 5
CONFIGURATION_ERROR_EXIT = 2
"""The exit code of a child that refused its configuration (`zapstream.cli`): restarting
it cannot help, so it is not restarted."""


def worker_web_ports(settings: Settings) -> list[int]:
    """The web port (`/metrics`) of each worker `zapstream up` starts: WORKER_WEB_PORT,
    then the next ports up, skipping the ports of the sink, the webhook API and the
    sandbox (with the defaults: 6066, 6068, 6069, ...)."""
    taken = {settings.sink_web_port, settings.webhook_port, settings.sandbox_port}
    ports: list[int] = []
    port = settings.worker_web_port
    while len(ports) < settings.workers:
        if port not in taken:
            ports.append(port)
        port += 1
    return ports


def embedder_web_ports(settings: Settings) -> list[int]:
    """The `/metrics` port of each embedder `zapstream up` starts: the ports after the
    workers' (skipping the same taken ones)."""
    taken = {settings.sink_web_port, settings.webhook_port, settings.sandbox_port}
    taken |= set(worker_web_ports(settings))
    ports: list[int] = []
    port = max(worker_web_ports(settings), default=settings.worker_web_port) + 1
    while len(ports) < settings.embedding_workers:
        if port not in taken:
            ports.append(port)
        port += 1
    return ports


EMBEDDED_TANSU_MIN_PARTITIONS = 2


def with_embedded_partitions(settings: Settings, broker_kind: str) -> Settings:
    """The settings `zapstream up` runs with when it starts the embedded broker itself.

    Unless TOPIC_PARTITIONS is set, the embedded Tansu's topics get as many partitions
    as the stack has consumers of one topic (workers, embedders), and at least 2,
    instead of 8. Tansu answers a fetch by reading every partition it names, again and
    again until the fetch's wait is over, so every partition costs CPU even when no
    record flows: measured idle on two cores, the stack took 12.3 % of a core with 8
    partitions and 5.1 % with 2, and under load (200 msgs/s) the same CPU per message
    and latency within the runs' spread. Tansu keeps nothing across restarts, so
    the topics are always made anew with this count; Apache Kafka's keep the setting
    (8), which is also the most workers a group can use there."""
    if broker_kind != "tansu" or "topic_partitions" in settings.model_fields_set:
        return settings
    wanted = max(EMBEDDED_TANSU_MIN_PARTITIONS, settings.workers, settings.embedding_workers)
    return settings.model_copy(update={"topic_partitions": wanted})


def stack_ports(settings: Settings) -> set[int]:
    """The ports `zapstream up`'s own servers bind once the broker is up: an embedded
    broker picking its port at random must not take one of them first."""
    ports = {settings.sink_web_port, settings.webhook_port, settings.sandbox_port}
    return ports | set(worker_web_ports(settings)) | set(embedder_web_ports(settings))


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    pumps: list[threading.Thread] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    optional: bool = False
    """The stack runs on without it (the embedders): a configuration error stops only it."""
    given_up: bool = False


class Supervisor:
    def __init__(
        self, settings: Settings, *, out: IO[str] = sys.stdout, broker_kind: str | None = None
    ) -> None:
        self.settings = settings
        self.out = out
        self.broker_kind = broker_kind or settings.broker
        self.broker: EmbeddedBroker | None = None
        self.children: list[Child] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._color = out.isatty()

    # -- output ---------------------------------------------------------------
    def say(self, name: str, line: str) -> None:
        prefix = f"{name:>8} |"
        if self._color:
            color = COLORS[hash(name) % len(COLORS)]
            prefix = f"\x1b[{color}m{prefix}\x1b[0m"
        with self._lock:
            try:
                self.out.write(f"{prefix} {line}\n")
                self.out.flush()
            except (OSError, ValueError):
                pass  # whoever read our output is gone; keep supervising (and stopping)

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode("utf-8", "replace").rstrip())
        stream.close()

    # -- lifecycle ------------------------------------------------------------
    def child_env(self, bootstrap: str) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        # every child sizes its tables and rate share by the count the topics were made with
        env["TOPIC_PARTITIONS"] = str(self.settings.topic_partitions)
        env["GRAPH_API_BASE_URL"] = self.settings.graph_base_url
        env.setdefault("LOG_FORMAT", "console" if self._color else self.settings.log_format)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _member(self, env: dict[str, str], name: str, static: bool) -> dict[str, str]:
        """Static group membership per child slot where the broker supports it: a
        crashed worker restarted by us rejoins as itself, without a rebalance storm."""
        if not static or "CONSUMER_GROUP_INSTANCE_ID" in env:
            return env
        return {**env, "CONSUMER_GROUP_INSTANCE_ID": f"{self.settings.app_id}-{name}"}

    def spawn(
        self, name: str, command: list[str], env: dict[str, str], *, optional: bool = False
    ) -> Child:
        child = Child(name, command, env, optional=optional)
        self._launch(child)
        self.children.append(child)
        return child

    def _launch(self, child: Child) -> None:
        argv = [sys.executable, "-m", "zapstream.cli", *child.command]
        proc = subprocess.Popen(
            argv,
            env=child.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.proc = proc
        assert proc.stdout is not None
        pump = threading.Thread(target=self._pump, args=(child.name, proc.stdout), daemon=True)
        pump.start()
        child.pumps.append(pump)
        self.say("up", f"started {child.name} (pid {proc.pid})")

    def start(self) -> str:
        s = self.settings
        if s.kafka_bootstrap_servers:
            bootstrap = s.kafka_bootstrap_servers
            self.say("up", f"using the Kafka cluster at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
            check_broker_sync(bootstrap, fail_on_outage=True)  # topics come next
        else:
            s = self.settings = with_embedded_partitions(s, self.broker_kind)
            self.broker = make_broker(
                self.broker_kind, s.data_dir, s.kafka_version, avoid=stack_ports(s)
            )
            self.say("up", f"starting the embedded {self.broker.name} broker ...")
            t0 = time.monotonic()
            bootstrap = self.broker.start()
            self.say(
                "up",
                f"{self.broker.name} ready at {bootstrap} in {time.monotonic() - t0:.1f}s (pid {self.broker.pid}, log {self.broker.log_path})",
            )
        created = ensure_topics_sync(bootstrap, all_topic_specs(s), s.topic_replication_factor)
        if created:
            self.say(
                "up", f"created {len(created)} topics ({s.topic_partitions} partitions per user key)"
            )
        env = self.child_env(bootstrap)
        static = run_sync(detect_idempotence(bootstrap))  # Apache Kafka, not Tansu
        if not s.graph_api_base_url:
            self.spawn("sandbox", ["sandbox"], env)
        self.spawn("sink", ["sink"], self._member(env, "sink", static))
        for i, port in enumerate(worker_web_ports(s)):
            name = f"worker{i + 1}" if s.workers > 1 else "worker"
            slot = {"WORKER_SLOT": name} if "WORKER_SLOT" not in env else {}
            worker_env = {**self._member(env, name, static), "WORKER_WEB_PORT": str(port), **slot}
            self.spawn(name, ["worker"], worker_env)
        for i, port in enumerate(embedder_web_ports(s)):
            name = f"embedder{i + 1}" if s.embedding_workers > 1 else "embedder"
            embedder_env = {**self._member(env, name, static), "EMBEDDING_WEB_PORT": str(port)}
            self.spawn(name, ["embedder"], embedder_env, optional=True)
        self.spawn("api", ["api"], env)
        self._wait_healthy(f"http://{s.webhook_host}:{s.webhook_port}/healthz")
        self._wait_healthy(
            f"http://127.0.0.1:{s.sink_web_port}/ready", what="the sink (partitions assigned)"
        )
        if not s.graph_api_base_url:
            self._wait_healthy(f"{s.graph_base_url}/_sandbox/stats", what="the sandbox")
        self.banner(bootstrap)
        return bootstrap

    def _wait_healthy(self, url: str, timeout: float = 90.0, what: str = "the webhook API") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise ZapstreamError(f"{what} did not answer {url} within {timeout:.0f}s")

    def check_children(self) -> None:
        """Restart a child that died (a crashed worker resumes from its committed offsets
        and its tables' changelogs); give up when one keeps dying."""
        for child in self.children:
            if child.given_up or child.proc is None or child.proc.poll() is None:
                continue
            if self._stopping.is_set():
                continue
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < 60] + [now]
            code = child.proc.returncode
            if code == CONFIGURATION_ERROR_EXIT:
                self._configuration_error(child)
                continue
            if len(child.restarts) > MAX_RESTARTS_PER_MINUTE:
                raise ZapstreamError(
                    f"{child.name} (pid {child.proc.pid}) keeps exiting (last code {code})"
                )
            self.say(
                "up", f"{child.name} (pid {child.proc.pid}) exited with code {code}; restarting it"
            )
            self._launch(child)

    def _configuration_error(self, child: Child) -> None:
        """A child that exited on a configuration error (its own output above says
        which setting) is not restarted: it would fail the same way in a loop. An
        optional child (an embedder) stays down and the stack runs on without it;
        any other stops the stack with code 2."""
        assert child.proc is not None
        what = f"{child.name} (pid {child.proc.pid}) exited on a configuration error (code 2)"
        if not child.optional:
            raise ConfigurationError(f"{what}; not restarting it: fix the setting it names")
        child.given_up = True
        self.say(
            "up",
            f"{what}; not restarting it: fix the setting it names and restart the stack "
            "(everything else keeps running)",
        )

    def banner(self, bootstrap: str) -> None:
        s = self.settings
        broker = (
            f"embedded {self.broker.name} at {bootstrap}"
            if self.broker
            else f"external cluster at {bootstrap}"
        )
        data = ""
        if self.broker is not None:
            data = (
                f" (data: {self.broker.data_path})"
                if self.broker.data_path
                else " (memory only: lost on stop)"
            )
        lines = [
            "zapstream is up",
            f"  broker        {broker}{data}",
            f"  webhook       {s.webhook_url}   (GET verifies, POST receives)",
            f"  health        http://{s.webhook_host}:{s.webhook_port}/readyz",
            f"  graph api     {s.graph_base_url}"
            + ("   (local sandbox)" if not s.graph_api_base_url else ""),
            f'  duckdb        {s.resolved_duckdb_path}   (query: zapstream db "SELECT ...")',
            f"  workers       {s.workers}",
            f"  embedders     {s.embedding_workers}"
            + ('   (search: zapstream search "text")' if s.embedding_workers else "   (off)"),
            f"  metrics       api :{s.webhook_port}, sink :{s.sink_web_port}, "
            f"worker{'s' if s.workers > 1 else ''} :{', :'.join(map(str, worker_web_ports(s)))}"
            + (
                f", embedder{'s' if s.embedding_workers > 1 else ''} "
                f":{', :'.join(map(str, embedder_web_ports(s)))}"
                if s.embedding_workers
                else ""
            )
            + "   (GET /metrics, Prometheus)",
            f"  handoffs      http://{s.webhook_host}:{s.webhook_port}/handoffs   (bearer ADMIN_TOKEN"
            + ("" if s.admin_token else ": unset, so 403")
            + "; helpdesk "
            + ("notified)" if s.helpdesk_webhook_url else "not notified: HELPDESK_WEBHOOK_URL unset)"),
        ]
        dev = s.dev_defaults_in_use()
        if dev:
            # names only: a secret's value is never printed (the defaults are in the README)
            lines.append(f"  DEV SECRETS in use (set them for production): {', '.join(dev)}")
        lines.append('  try: zapstream webhook send "olá"     stop: Ctrl-C')
        for line in lines:
            self.say("up", line)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                self.say("up", f"stopping {child.name} (pid {child.proc.pid})")
                stop_process(child.proc, timeout=20.0)
            for pump in child.pumps:
                pump.join(timeout=2)
        if self.broker is not None:
            self.say("up", f"stopping {self.broker.name} broker (pid {self.broker.pid})")
            self.broker.stop()
        self.say("up", "stopped")

    def run_forever(self) -> int:
        def on_signal(signum: int, _: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        code = 0
        try:
            self.start()
            while True:
                self.check_children()
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.say("up", "shutting down ...")
        except ConfigurationError as exc:
            self.say("up", f"configuration error: {exc}")
            code = 2
        except ZapstreamError as exc:
            self.say("up", f"error: {exc}")
            code = 1
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.stop()
        return code
