"""A genuine single-node Apache Kafka (KRaft), started from the broker's jars on Maven Central.

No Docker and no tarball: the jars of `org.apache.kafka:kafka_2.13` and a logging
backend are resolved once with Maven into a cache folder (`zapstream.brokers.jars`),
then `kafka.Kafka` runs as broker *and* controller of a one-node cluster on two
loopback ports.

Everything the cluster needs to come back as it was lives in `persistent_dir`:

    <persistent_dir>/broker.json        cluster id, ports, version (chosen once, reused)
    <persistent_dir>/server.properties  regenerated at each start from broker.json
    <persistent_dir>/kraft/             log.dirs: topics, offsets, the metadata log

so a stop and a start lose nothing and old data can be replayed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from zapstream.brokers.embedded import BrokerStartError, wait_for_metadata
from zapstream.brokers.jars import kafka_major, logging_options, resolve_kafka_libs
from zapstream.brokers.java import MIN_JAVA, java_major
from zapstream.brokers.process import free_port, stop_broker_process
from zapstream.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_VERSION: str = Settings.model_fields["kafka_version"].default
"""One source of truth: `KAFKA_VERSION`'s default."""

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""A webhook body may be 3 MiB and the producer allows twice that per request; Kafka's
default of 1 MiB per record batch would refuse such a body with MessageSizeTooLarge."""

JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    # C1 only: restarts 2.1 -> 1.5 s (median of 5) with no measurable loss in
    # throughput here, where the Python clients are the limit, and no C2 compiler
    # threads competing with them for the two cores.
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",  # a half-dead broker is worse than a dead one
    "-Djava.awt.headless=true",
)


def _new_cluster_id() -> str:
    # Kafka's Uuid.toString: URL-safe base64 of 16 bytes without padding. Kafka
    # re-draws ids starting with "-" (they look like a command-line option).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class _State:
    cluster_id: str
    port: int
    controller_port: int
    version: str


class KafkaBroker:
    """Apache Kafka, one node in KRaft mode, data kept on disk between runs."""

    name = "kafka"
    supports_idempotence = True

    def __init__(
        self,
        data_dir: Path,
        version: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        persistent_dir: Path | None = None,
        *,
        cache_dir: Path | None = None,
        java: str = "java",
        auto_create_topics: bool = False,
        avoid: Collection[int] = (),
    ) -> None:
        self._avoid = set(avoid)
        self.version = version or DEFAULT_VERSION
        self.host = host
        self.cache_dir = cache_dir
        self.java = java
        self.auto_create_topics = auto_create_topics
        # Absolute: the paths go into server.properties, read by a JVM whose working
        # directory is ours only by accident.
        self.home = (persistent_dir or data_dir / "kafka").resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.kraft_dir = self.home / "kraft"
        self.data_path: Path | None = self.kraft_dir
        self._state_path = self.home / "broker.json"
        self._state = self._load_or_create_state(port)
        self.port = self._state.port
        self.bootstrap_servers = f"{host}:{self.port}"
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "logs" / f"kafka-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def controller_port(self) -> int:
        return self._state.controller_port

    @property
    def cluster_id(self) -> str:
        return self._state.cluster_id

    def _load_or_create_state(self, port: int | None) -> _State:
        # The cluster id must match the one the log dir was formatted with, and the
        # ports stay the same so that a restart is invisible to anything configured
        # with the old bootstrap address.
        if self._state_path.exists():
            saved = _State(**json.loads(self._state_path.read_text()))
            if port is not None and port != saved.port:
                saved = _State(saved.cluster_id, port, saved.controller_port, saved.version)
            if saved.version != self.version:
                log.warning(
                    "kafka data dir was last used by another version",
                    extra={"was": saved.version, "now": self.version},
                )
                saved = _State(saved.cluster_id, saved.port, saved.controller_port, self.version)
        else:
            chosen = port or free_port(self.host, self._avoid)
            controller = free_port(self.host, self._avoid | {chosen})
            saved = _State(_new_cluster_id(), chosen, controller, self.version)
        tmp = self._state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(saved), indent=2) + "\n")
        os.replace(tmp, self._state_path)
        return saved

    def _server_properties(self) -> str:
        s, host = self._state, self.host
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Static voters work on 3.9 and 4.x alike (4.x also offers a dynamic quorum).
            "controller.quorum.voters": f"1@{host}:{s.controller_port}",
            "listeners": f"PLAINTEXT://{host}:{s.port},CONTROLLER://{host}:{s.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{s.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.kraft_dir),
            # One node: internal topics cannot have more than one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # 50 partitions each by default: created on first use, which then takes
            # seconds on a small box for no benefit on one node.
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.num.partitions": "8",
            # A group starts at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            # Tests and dev use short consumer session timeouts (Tansu-style 2-4 s);
            # Kafka refuses any below this floor (default 6 s) with InvalidSessionTimeout.
            "group.min.session.timeout.ms": "1000",
            "num.partitions": "8",
            # Our code creates every topic (and Faust its internal ones) explicitly: a
            # typo in a topic name should fail, not create a topic.
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            # Sized for a 2-core box: the cleaner allocates its dedupe buffer up front
            # (128 MiB by default), and thread pools default to server sizes.
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "2",
            # The controller writes a no-op record to the metadata log this often
            # (default 500 ms), waking the broker's metadata path each time. One
            # node has no follower to reassure: measured idle, the broker alone took
            # 3.1-3.4 % of a core with the default and 2.3 % with 5 s.
            "metadata.max.idle.interval.ms": "5000",
        }
        if kafka_major(self.version) < 4:
            # The share-group coordinator arrived in 4.x; 3.9 warns on unknown keys.
            props = {k: v for k, v in props.items() if not k.startswith("share.")}
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self) -> str:
        path = shutil.which(self.java)
        major = java_major(self.java)
        if path is None or major is None:
            raise BrokerStartError(
                self.name,
                f"no `{self.java}` on PATH: Apache Kafka needs a JDK ({MIN_JAVA}+); "
                "install one or use BROKER=tansu",
                None,
            )
        if major < MIN_JAVA:
            raise BrokerStartError(
                self.name, f"`{path}` is Java {major}; Kafka needs Java {MIN_JAVA}+", None
            )
        return path

    def _format_storage(self, java: str, classpath: str, properties: Path) -> None:
        if (self.kraft_dir / "meta.properties").exists():
            return  # formatted before: formatting again would refuse, or lose data
        done = subprocess.run(
            [
                java,
                "-Xmx256m",
                "-cp",
                classpath,
                *logging_options(self.version, self.home),
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                self._state.cluster_id,
                "-c",
                str(properties),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerStartError(
                self.name,
                f"formatting {self.kraft_dir} failed:\n{done.stdout}{done.stderr}",
                None,
            )

    def _port_in_use(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port))
            except OSError:
                return True
            return False

    def _wait_for_listener(self, deadline: float) -> None:
        # The JVM needs seconds before it listens; asking for metadata meanwhile makes
        # aiokafka log a connection error every 0.2 s. A TCP probe is silent.
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"process exited with code {self._proc.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"nothing listens on {self.bootstrap_servers}")

    async def _wait_for_group_coordinator(self, deadline: float) -> None:
        # The first FindCoordinator after a format creates __consumer_offsets, and
        # after a restart its partitions load: either way clients meanwhile log
        # "GroupCoordinatorNotAvailable" as an ERROR. Ready means groups work too.
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            while True:
                try:
                    await admin.find_coordinator("zapstream-broker-ready")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the group coordinator did not come up") from None
                    await asyncio.sleep(0.1)
        finally:
            await admin.close()

    def start(self, timeout: float = 60.0) -> str:
        """Start (formatting the log dir on first use); returns the bootstrap address.

        `timeout` bounds the wait for the broker to answer metadata; resolving the jars
        on a cold cache comes before it and has its own limit.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self.bootstrap_servers
        java = self._java()
        libs = resolve_kafka_libs(self.version, self.cache_dir)
        classpath = str(libs / "*")
        for port in (self._state.port, self._state.controller_port):
            if self._port_in_use(port):
                raise BrokerStartError(
                    self.name,
                    f"port {port} (kept in {self._state_path}) is in use: is this data dir's "
                    "broker still running? Stop it, or delete that file to choose new ports",
                    None,
                )
        properties = self.home / "server.properties"
        properties.write_text(self._server_properties())
        self._format_storage(java, classpath, properties)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the broker
        self._proc = subprocess.Popen(
            [
                java,
                *JVM_OPTIONS,
                *logging_options(self.version, self.home),
                "-cp",
                classpath,
                "kafka.Kafka",
                str(properties),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
        )
        deadline = time.monotonic() + timeout
        try:
            self._wait_for_listener(deadline)
            wait_for_metadata(self.bootstrap_servers, deadline, self._proc)
            asyncio.run(self._wait_for_group_coordinator(deadline))
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise BrokerStartError(self.name, str(exc), self.log_path) from exc
        log.info(
            "kafka broker ready",
            extra={"bootstrap": self.bootstrap_servers, "pid": self.pid, "version": self.version},
        )
        return self.bootstrap_servers

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM for a controlled shutdown (logs flushed, no recovery next start)."""
        stop_broker_process(self, timeout)
