"""One `zapstream sink` process (or a test variant of it) on a test's topics and file.

The process reads the settings from its environment, as it does under `zapstream up`;
it is stopped by its pid. `query` goes through its HTTP port, like `zapstream db`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from zapstream.brokers.process import free_port, stop_process
from zapstream.settings import Settings

SINK = ["-m", "zapstream.cli", "sink"]


def sink_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("KAFKA_", "SINK_", "TOPIC_", "BROKER_", "DUCKDB_")):
            del env[key]
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.require_bootstrap(),
        TOPIC_PREFIX=settings.topic_prefix,
        TOPIC_PARTITIONS=str(settings.topic_partitions),
        APP_ID=settings.app_id,
        DATA_DIR=str(settings.data_dir),
        SINK_WEB_PORT=str(port),
        BROKER_SESSION_TIMEOUT_S="4",
        BROKER_HEARTBEAT_INTERVAL_S="0.3",
        BROKER_REBALANCE_TIMEOUT_S="3",
        BROKER_COMMIT_INTERVAL_S="0.3",
        SINK_FLUSH_MS="100",
        LOG_FORMAT="json",
    )
    env.update(extra)
    return env


class SinkProcess:
    def __init__(
        self,
        settings: Settings,
        *,
        argv: list[str] | None = None,
        stderr: Path | None = None,
        **env: str,
    ) -> None:
        self.settings = settings
        self.port = free_port()
        self.argv = argv or SINK
        self.env = sink_env(settings, self.port, **env)
        self.stderr = stderr
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SinkProcess:
        err = self.stderr.open("wb") if self.stderr is not None else None
        try:
            self.proc = subprocess.Popen([sys.executable, *self.argv], env=self.env, stderr=err)
        finally:
            if err is not None:
                err.close()
        return self

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is not None:
            stop_process(self.proc, timeout=timeout)
            return self.proc.returncode
        return None

    def terminate_and_wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def _assert_alive(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"the sink exited with {self.proc.returncode}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, sql: str, timeout: float = 10) -> list[tuple[Any, ...]]:
        resp = httpx.post(f"{self.url}/query", json={"sql": sql}, timeout=timeout)
        assert resp.status_code == 200, resp.text
        return [tuple(r) for r in resp.json()["rows"]]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._assert_alive()
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the sink never became ready")

    def wait_for(self, sql: str, expected: list[tuple[Any, ...]], timeout: float = 60) -> None:
        """Poll `sql` through the sink until it returns `expected`."""
        deadline = time.monotonic() + timeout
        rows: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            self._assert_alive()
            try:
                rows = self.query(sql)
            except httpx.HTTPError:
                rows = []
            if rows == expected:
                return
            time.sleep(0.2)
        raise AssertionError(f"{sql!r} gave {rows}, expected {expected}")


async def produce(settings: Settings, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    """(key, value) pairs, in order, acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.require_bootstrap())
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def committed(settings: Settings, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on `topic` (a consumer that never joins)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.require_bootstrap(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        total = 0
        for p in range(settings.topic_partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            total += offset or 0
        return total
    finally:
        await consumer.stop()


def marker(path: Path) -> Path:
    path.touch()
    return path
