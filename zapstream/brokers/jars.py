"""The Apache Kafka broker's jars, resolved once with Maven into a cache folder.

The Apache tarball's `libs/` is Kafka's runtime dependencies plus a logging backend;
Maven Central has the same jars, so a generated pom and `dependency:copy-dependencies`
rebuild that folder without Docker or a download site:

    <cache_dir>/kafka-<version>/libs/*.jar     the classpath of `kafka.Kafka`

The logging backend's config (`logging_options`) lives here too: which backend the
jars hold decides how it is configured.
"""

from __future__ import annotations

import fcntl
import logging
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from zapstream.brokers.embedded import BrokerStartError

log = logging.getLogger(__name__)

MAVEN_TIMEOUT_S = 600.0


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "zapstream"


def kafka_major(version: str) -> int:
    return int(version.split(".", 1)[0])


def _pom(version: str) -> str:
    # Kafka's pom brings slf4j-api but no backend (the tarball adds one); without it
    # the broker logs nothing and a failed start is silent. 3.x logs through reload4j
    # (its Log4jController needs the log4j 1 API); 4.x through log4j2, whose binding is
    # added after this resolution so that its version matches Kafka's log4j-core.
    backend = (
        ""
        if kafka_major(version) >= 4
        else (
            "<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>"
            "<version>1.7.36</version></dependency>"
        )
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>zapstream</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    {backend}
  </dependencies>
</project>
"""


def _run_maven(mvn: str, pom: Path, goals: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), *goals],
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerStartError(
            "kafka", f"Maven took over {MAVEN_TIMEOUT_S:.0f}s resolving {what}", None
        ) from exc
    if done.returncode != 0:
        # Maven 3.8 colours some lines even in batch mode; the message is read as text.
        plain = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
        output = "\n".join(plain.splitlines()[-40:])
        raise BrokerStartError("kafka", f"Maven could not resolve {what}:\n{output}", None)


def _download_libs(mvn: str, version: str, work: Path) -> Path:
    pom = work / "pom.xml"
    pom.write_text(_pom(version))
    out = work / "libs"
    _run_maven(
        mvn,
        pom,
        ["dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={out}"],
        f"Kafka {version}",
    )
    if not (out / f"kafka_2.13-{version}.jar").exists():
        raise BrokerStartError("kafka", f"Maven did not fetch kafka_2.13-{version}.jar", None)
    if kafka_major(version) >= 4:
        prefix = "log4j-core-"
        cores = [j.name[len(prefix) : -len(".jar")] for j in out.glob(f"{prefix}*.jar")]
        if len(cores) != 1:
            raise BrokerStartError("kafka", f"expected one log4j-core jar, got {cores}", None)
        artifact = f"org.apache.logging.log4j:log4j-slf4j-impl:{cores[0]}"
        _run_maven(
            mvn,
            pom,
            ["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={out}"],
            artifact,
        )
    return out


def resolve_kafka_libs(version: str, cache_dir: Path | None = None) -> Path:
    """The folder of the broker's jars, resolved with Maven on first use.

    Maven writes into a temporary folder that is renamed into place only when complete,
    under a file lock, so concurrent test processes never see half a folder and run
    Maven once between them.
    """
    root = (cache_dir or default_cache_dir()) / f"kafka-{version}"
    libs = root / "libs"
    if libs.is_dir():
        return libs
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if libs.is_dir():  # another process resolved it while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerStartError(
                "kafka", "no `mvn` on PATH: Maven resolves the broker's jars once", None
            )
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=root, prefix=".resolve-") as tmp:
            _download_libs(mvn, version, Path(tmp)).rename(libs)
        log.info(
            "resolved kafka jars",
            extra={
                "version": version,
                "libs": str(libs),
                "seconds": round(time.monotonic() - started, 1),
            },
        )
    return libs


def logging_options(version: str, config_dir: Path) -> list[str]:
    """JVM options pointing the backend `_pom` chose at a config written in `config_dir`.

    Everything goes to stdout (the broker's log file), request logs only when they warn.
    """
    if kafka_major(version) >= 4:
        path = config_dir / "log4j2.properties"
        path.write_text(
            "status = warn\n"
            # log4j2's own shutdown hook would stop logging before Kafka's controlled
            # shutdown has logged anything.
            "shutdownHook = disable\n"
            "appender.out.type = Console\n"
            "appender.out.name = OUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.out.ref = OUT\n"
            "logger.request.name = kafka.request.logger\n"
            "logger.request.level = WARN\n"
            "logger.state.name = state.change.logger\n"
            "logger.state.level = WARN\n"
        )
        return [f"-Dlog4j2.configurationFile={path}"]
    path = config_dir / "log4j.properties"
    path.write_text(
        "log4j.rootLogger=INFO, out\n"
        "log4j.appender.out=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.out.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka.request.logger=WARN\n"
        "log4j.logger.state.change.logger=WARN\n"
    )
    return [f"-Dlog4j.configuration=file:{path}"]
