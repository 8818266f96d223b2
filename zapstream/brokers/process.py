"""Ports and processes of the embedded brokers: a free loopback port, stop by pid."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
from typing import IO, Protocol

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL: by this process's id, never by name."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %s ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


class BrokerProcess(Protocol):
    """What `stop_broker_process` needs of a broker: its process and its open log."""

    _proc: subprocess.Popen[bytes] | None
    _log: IO[bytes] | None


def stop_broker_process(broker: BrokerProcess, timeout: float) -> None:
    """Stop a broker's process by pid and close its log (shared by both brokers)."""
    if broker._proc is not None:
        stop_process(broker._proc, timeout)
        broker._proc = None
    if broker._log is not None:
        broker._log.close()
        broker._log = None
