"""The embedder process at start: a wrong EMBEDDING_MODEL is one clear line and exit
code 2 (no traceback, no broker needed), and the supervisor does not restart a child
that exited on a configuration error."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from zapstream.errors import ConfigurationError
from zapstream.settings import Settings
from zapstream.supervisor.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_", "KAFKA_"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_a_missing_model_is_one_clear_line_and_exit_code_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    out = subprocess.run(
        [sys.executable, "-m", "zapstream.cli", "embedder"],
        cwd=ROOT,
        env=env_with(
            EMBEDDING_MODEL=str(missing),
            KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
            DATA_DIR=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [f"configuration error: EMBEDDING_MODEL: {missing}: no such directory"]


def wait_exit(sup: Supervisor, name: str, timeout: float = 120.0) -> None:
    child = next(c for c in sup.children if c.name == name)
    deadline = time.monotonic() + timeout
    assert child.proc is not None
    while child.proc.poll() is None:
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.1)


def test_the_supervisor_does_not_restart_an_embedder_with_a_bad_model(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(Settings(data_dir=tmp_path), out=out)
    env = env_with(EMBEDDING_MODEL=str(tmp_path / "nope"), KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    sup.spawn("embedder", ["embedder"], env, optional=True)
    try:
        wait_exit(sup, "embedder")
        for _ in range(10):  # as its loop would, many times over
            sup.check_children()
        text = out.getvalue()
        assert text.count("started embedder") == 1
        assert "exited on a configuration error (code 2); not restarting it" in text
        assert "EMBEDDING_MODEL" in text  # the child's own line says which setting
    finally:
        sup.stop()


def test_any_other_child_with_a_configuration_error_stops_the_stack_with_code_2(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    sup = Supervisor(Settings(data_dir=tmp_path), out=out)
    # the worker refuses a malformed broker address: a configuration error, code 2
    sup.spawn("worker", ["worker"], env_with(KAFKA_BOOTSTRAP_SERVERS="no-port-here"))
    try:
        wait_exit(sup, "worker")
        with pytest.raises(ConfigurationError, match=r"worker .* configuration error"):
            sup.check_children()
        assert out.getvalue().count("started worker") == 1
    finally:
        sup.stop()


def test_each_embedder_of_zapstream_up_gets_a_metrics_port_after_the_workers() -> None:
    from zapstream.supervisor.supervisor import embedder_web_ports

    def ports(**kw: Any) -> list[int]:
        return embedder_web_ports(Settings(_env_file=None, **kw))  # type: ignore[call-arg]

    assert ports() == [6068]  # worker 6066, sink 6067
    assert ports(embedding_workers=2, workers=2) == [6069, 6070]  # workers 6066, 6068
    assert ports(embedding_workers=0) == []
