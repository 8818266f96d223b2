"""Shared fixtures: real brokers, started once per session, stopped by pid.

Integration and end-to-end tests that take the `broker` fixture run once per broker
kind (`--brokers tansu,kafka` by default): the embedded Tansu and a genuine Apache
Kafka (KRaft) from Maven Central. Never skipped for "no broker": we start one.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from zapstream.brokers.embedded import EmbeddedBroker
from zapstream.brokers.factory import make_broker
from zapstream.settings import Settings


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # `timeout`/CI send SIGTERM: turn it into Ctrl-C so that pytest still runs the
    # fixtures' teardown and stops every broker and stack it started (by pid).
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--brokers",
        default="tansu,kafka",
        help="comma-separated broker kinds the integration tests run against",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_kind" in metafunc.fixturenames:
        kinds = [k.strip() for k in metafunc.config.getoption("--brokers").split(",") if k.strip()]
        metafunc.parametrize("broker_kind", kinds, scope="session")


class _Brokers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, EmbeddedBroker] = {}

    def get(self, kind: str) -> EmbeddedBroker:
        if kind not in self.running:
            broker = make_broker(kind, self.root / kind)
            broker.start()
            self.running[kind] = broker
        return self.running[kind]

    def stop_all(self) -> None:
        for broker in self.running.values():
            broker.stop()


@pytest.fixture(scope="session")
def _brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Brokers]:
    brokers = _Brokers(tmp_path_factory.mktemp("brokers"))
    yield brokers
    brokers.stop_all()


@pytest.fixture(scope="session")
def broker(_brokers: _Brokers, broker_kind: str) -> EmbeddedBroker:
    return _brokers.get(broker_kind)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def broker_settings(broker: EmbeddedBroker, tmp_path: Path, unique: str) -> Settings:
    """Settings for one test: its own topics, consumer groups and DuckDB file."""
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=f"t{unique}",
        app_id=f"zs{unique}",
        data_dir=tmp_path / "data",
        topic_partitions=4,
        broker_session_timeout_s=4.0,
        broker_heartbeat_interval_s=0.2,
        broker_rebalance_timeout_s=3.0,
        broker_commit_interval_s=0.5,
        sink_flush_ms=200,
    )
