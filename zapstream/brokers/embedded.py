"""What every embedded broker is (`EmbeddedBroker`), how it fails to start
(`BrokerStartError`, with the tail of its log) and when it is ready (`wait_for_metadata`).

Each broker starts on a loopback port, waits until it answers Kafka *metadata* (an
open TCP port is not enough), and stops by process id: SIGTERM, a wait, then SIGKILL.
The log goes to a file that is printed when start-up fails.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Protocol

from zapstream.errors import InvalidBrokerAddress, ZapstreamError
from zapstream.kafka_address import parse_bootstrap
from zapstream.kafka_probe import broker_answers


class BrokerStartError(ZapstreamError):
    def __init__(self, name: str, reason: str, log_path: Path | None) -> None:
        tail = ""
        if log_path is not None and log_path.exists():
            tail = "\n--- broker log (last 60 lines) ---\n" + "\n".join(
                log_path.read_text(errors="replace").splitlines()[-60:]
            )
        super().__init__(f"{name} broker did not start: {reason}{tail}")


class EmbeddedBroker(Protocol):
    name: str
    bootstrap_servers: str
    log_path: Path
    data_path: Path | None
    """Where the broker keeps its data (None: memory only)."""
    supports_idempotence: bool

    @property
    def pid(self) -> int | None: ...

    def start(self, timeout: float = 60.0) -> str: ...

    def stop(self, timeout: float = 20.0) -> None: ...


def wait_for_metadata(
    bootstrap: str, deadline: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode}")
        # a Kafka client logs every refused connection as an error: ask it only once
        # the port is open (a broker starting up is not a failure worth a log line)
        if port_open(bootstrap) and broker_answers(bootstrap, timeout_ms=1500):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no metadata answer from {bootstrap}")


def port_open(bootstrap: str, timeout_s: float = 0.5) -> bool:
    """Does the first `host:port` of `bootstrap` accept a TCP connection?"""
    try:
        first = parse_bootstrap(bootstrap)[0]
        with socket.create_connection((first.host, first.port), timeout=timeout_s):
            return True
    except (OSError, InvalidBrokerAddress):
        return False
