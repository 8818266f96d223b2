"""`zapstream up` waits for its broker without an error line per refused connection:
the Kafka client is asked only once the port is open."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from zapstream.brokers.embedded import port_open, wait_for_metadata


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_nobody_listens_on_is_not_open_and_a_listening_one_is() -> None:
    assert not port_open(f"127.0.0.1:{_closed_port()}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert port_open(f"127.0.0.1:{s.getsockname()[1]}")
    assert not port_open("not an address")


def test_waiting_for_a_broker_that_is_not_listening_yet_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TimeoutError):
        wait_for_metadata(f"127.0.0.1:{_closed_port()}", time.monotonic() + 1.0)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
