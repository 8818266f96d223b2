"""Ports picked before anything binds them: an embedded broker's, and a test stack's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zapstream.brokers.factory import make_broker
from zapstream.brokers.kafka import KafkaBroker
from zapstream.brokers.process import PORT_RANGE, free_port
from zapstream.settings import Settings
from zapstream.supervisor.supervisor import stack_ports


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_a_port_promised_to_another_server_is_never_picked() -> None:
    left = PORT_RANGE[0] + 7
    avoid = set(range(*PORT_RANGE)) - {left}
    for _ in range(5):
        assert free_port(avoid=avoid) not in avoid
    # even when no pick in the range is left: the kernel's port is checked too
    everything = set(range(*PORT_RANGE))
    assert free_port(avoid=everything) not in everything


def test_the_ports_of_the_stack_s_own_servers_are_all_known_before_they_bind() -> None:
    s = settings(
        webhook_port=21001,
        sink_web_port=21002,
        sandbox_port=21003,
        worker_web_port=21010,
        workers=2,
        embedding_workers=1,
    )
    assert stack_ports(s) == {21001, 21002, 21003, 21010, 21011, 21012}


def test_an_embedded_broker_picks_none_of_the_stack_s_ports(tmp_path: Path) -> None:
    # every port of the range but one is promised: the broker takes that one
    left = PORT_RANGE[0] + 11
    avoid = set(range(*PORT_RANGE)) - {left}
    tansu = make_broker("tansu", tmp_path, avoid=avoid)
    assert tansu.bootstrap_servers.rsplit(":", 1)[1] not in {str(p) for p in avoid}
    kafka = KafkaBroker(tmp_path, avoid=avoid)
    assert kafka.port not in avoid
    assert kafka.controller_port not in avoid
