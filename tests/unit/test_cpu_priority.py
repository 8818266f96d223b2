"""A background process (the embedder) must lose the CPU to the reply path even where
Linux groups processes by session (autogroup): `zapstream up` starts every child in a
session of its own, and there a per-thread SCHED_IDLE alone left the embedder an
equal share of a busy machine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zapstream.cpu_priority import lower_priority, parse_autogroup

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="needs Linux's CPU affinity"
)

SPIN = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from zapstream.cpu_priority import autogroup_nice, lower_priority
    cpu, role, stop = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    os.sched_setaffinity(0, {cpu})
    if role == "background":
        print(lower_priority(19, idle=True), flush=True)
    else:
        print("normal", flush=True)
    # the normal process spins until it has had 1 s of CPU; the background one until then
    while not stop.exists():
        for _ in range(20_000):
            pass
        if role == "normal" and time.process_time() >= 1.0:
            stop.write_text("done")
    print(round(time.process_time(), 3), flush=True)
    """
)


def _spin(cpu: int, role: str, stop: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SPIN, str(cpu), role, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # as the supervisor starts its children
        cwd=Path(__file__).resolve().parents[2],
    )


def test_a_lowered_process_in_a_session_of_its_own_gets_little_cpu_beside_a_normal_one(
    tmp_path: Path,
) -> None:
    cpu = min(os.sched_getaffinity(0))
    stop = tmp_path / "stop"
    background = _spin(cpu, "background", stop)
    assert background.stdout is not None
    said = background.stdout.readline().strip()  # lowered before the normal one starts
    normal = _spin(cpu, "normal", stop)
    try:
        normal_out, _ = normal.communicate(timeout=120)
        background_out, _ = background.communicate(timeout=30)
    finally:
        for proc in (normal, background):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    normal_cpu = float(normal_out.split()[-1])
    background_cpu = float(background_out.split()[-1])
    # expected ~2 % (weights 15 against 1024); an equal share would be ~100 %
    assert background_cpu < 0.25 * normal_cpu, (said, background_cpu, normal_cpu)


def test_the_autogroup_nice_value_is_set_where_the_kernel_has_autogroups() -> None:
    if not Path("/proc/self/autogroup").exists():
        pytest.skip("no autogroups here: the per-thread setting is what counts")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from zapstream.cpu_priority import lower_priority, autogroup_nice;"
            "print(lower_priority(19, idle=True)); print(autogroup_nice())",
        ],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split("\n")
    assert out[0] == "SCHED_IDLE, autogroup nice 19"
    assert out[1] == "19"


def test_nothing_to_lower_is_normal() -> None:
    assert lower_priority(0) == "normal"


def test_a_process_in_a_shared_session_leaves_the_session_s_autogroup_alone() -> None:
    # `zapstream sink` typed in a shell, or started by a test without a session of its
    # own: lowering the shared group would slow the shell or the whole test run. The
    # session here is one of the test's own (the test run's may be in no autogroup).
    if not Path("/proc/self/autogroup").exists():
        pytest.skip("no autogroups here")
    script = (
        "import subprocess, sys;"
        "from zapstream.cpu_priority import autogroup_nice;"
        "before = autogroup_nice();"
        "said = subprocess.run([sys.executable, '-c', 'from zapstream.cpu_priority import"
        " lower_priority; print(lower_priority(10))'], capture_output=True, text=True,"
        " check=True).stdout.strip();"
        "print(before, said, autogroup_nice(), sep='|')"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.strip()
    before, said, after = out.split("|")
    assert said == "nice 10"
    assert before == after == "0"


@pytest.mark.parametrize(
    ("text", "nice"),
    [
        ("/autogroup-6329 nice 0\n", 0),
        ("/autogroup-12 nice 19\n", 19),
        ("/autogroup-12 nice -5\n", -5),
        ("", None),  # a process in the root group: no autogroup of its own
        ("garbage", None),
    ],
)
def test_the_autogroup_file_is_read_or_said_absent(text: str, nice: int | None) -> None:
    assert parse_autogroup(text) == nice
