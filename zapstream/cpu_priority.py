"""A background process gives the CPU to the reply path (the embedder: replies first,
vectors catch up once load drops).

Linux groups processes for CPU time by session (`kernel.sched_autogroup_enabled`, on by
default on desktops and many servers): `zapstream up` starts each child in a session
of its own, so every child is a group of one, and the groups share the CPU equally
whatever a thread's own nice value or policy says. Measured on two busy cores at
200 msgs/s: the embedder under SCHED_IDLE alone still took 20-31 % of a core while the
worker's event loop waited 60 % of the time for a CPU. So the group's nice value is
lowered too, where the kernel has one (`/proc/self/autogroup`); in a container with
its own CPU controller there is none and the per-thread setting is what counts.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int, *, idle: bool = False) -> str:
    """Lower this process's CPU priority for good and say what was set.

    `idle`: SCHED_IDLE for this thread (any runnable task of normal priority preempts
    it at once), else `nice` for it. On Linux both are per thread and threads started
    later inherit them: call it first, before anything starts a thread. Then, where
    this process leads its own session (as `zapstream up` starts it), the session's
    autogroup gets `nice` too (a process may always lower its own priority)."""
    done: list[str] = []
    policy = getattr(os, "SCHED_IDLE", None)
    if idle and policy is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, os.sched_param(0))
            done.append("SCHED_IDLE")
    if not done and nice:
        with contextlib.suppress(OSError):
            os.nice(nice - os.nice(0))
            done.append(f"nice {nice}")
    # Only a session leader owns its autogroup: in a shared session (`zapstream sink`
    # typed in a shell, a test's subprocess) the group is the shell's or the test
    # run's, and lowering it would slow every process in it.
    if nice and os.getsid(0) == os.getpid() and _set_autogroup_nice(nice):
        done.append(f"autogroup nice {nice}")
    return ", ".join(done) or "normal"


def _set_autogroup_nice(nice: int) -> bool:
    try:
        AUTOGROUP.write_text(f"{nice}\n")
    except OSError:  # no autogroups (a container's own cgroup), or not permitted
        return False
    return True


def autogroup_nice() -> int | None:
    """The nice value of this process's autogroup; None where there is none."""
    try:
        return parse_autogroup(AUTOGROUP.read_text())
    except OSError:
        return None


def parse_autogroup(text: str) -> int | None:
    """`/proc/<pid>/autogroup` reads "/autogroup-123 nice 19"; it is empty for a process
    in no autogroup of its own (the root group: a session that init or a container's
    first process started)."""
    match = re.fullmatch(r"/autogroup-\d+ nice (-?\d+)\s*", text)
    return int(match.group(1)) if match else None
