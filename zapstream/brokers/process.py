"""Ports and processes of the embedded brokers: a free loopback port, stop by pid."""

from __future__ import annotations

import logging
import random
import signal
import socket
import subprocess
from collections.abc import Collection
from typing import IO, Protocol

log = logging.getLogger(__name__)


PORT_RANGE = (20_000, 32_000)
"""Below Linux's ephemeral range (32768-60999), where the kernel picks ports for
outgoing connections and for `bind(0)`."""


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A port nothing listens on now, picked at random from PORT_RANGE, and none of
    `avoid` (ports already promised to a process that has not bound them yet).

    Several processes pick ports one after another before any of them binds (a test
    picks the sandbox's, then `zapstream up` starts a broker that picks its own):
    `bind(0)` hands the same just-freed port out again often enough to collide
    (measured: a broker and the sandbox on one port), a random pick among 12,000
    rarely does, and the kernel's own ephemeral ports never land there."""
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(*PORT_RANGE)
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


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
