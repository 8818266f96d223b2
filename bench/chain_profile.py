"""`--profile ROLE`: py-spy records one of the stack's Python processes for a rate step.

The profile is saved under bench/out/ (speedscope JSON by default: open it at
https://www.speedscope.app; `--profile-format flamegraph` writes an SVG instead), and
for speedscope files the heaviest functions (by samples where they are on top of the
stack, and by samples where they are anywhere on it) are printed with the step.

py-spy samples only the thread holding the GIL (`--gil`): that is where the process
spends CPU in Python (an idle event loop waiting in epoll is not counted; C code that
releases the GIL is not either). It pauses the process for each sample (--nonblocking
cannot tell who holds the GIL, nor whether a thread is idle) and its own CPU competes
with the stack: read latency and CPU figures from unprofiled runs.
"""

from __future__ import annotations

import collections
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def py_spy() -> str:
    """py-spy next to this interpreter (the venv) or on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit(
            f"--profile needs py-spy: {Path(sys.executable).parent / 'pip'} install py-spy"
        )
    return found


class Recording:
    def __init__(self, pid: int, out: Path, fmt: str, rate_hz: int = 100) -> None:
        self.out = out
        self.fmt = fmt
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                py_spy(),
                "record",
                "--pid",
                str(pid),
                "--output",
                str(out),
                "--format",
                fmt,
                "--rate",
                str(rate_hz),
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 60.0) -> str:
        """SIGINT makes py-spy write its file; returns a line for the report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
            return f"py-spy wrote nothing ({' | '.join(tail)})"
        return f"profile: {self.out}"


def top_functions(path: Path, n: int = 8) -> list[str]:
    """The heaviest frames of a speedscope file: self and total share of samples."""
    if path.suffix != ".json" or not path.exists():
        return []
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    self_w: collections.Counter[int] = collections.Counter()
    total_w: collections.Counter[int] = collections.Counter()
    all_w = 0.0
    for prof in doc.get("profiles", []):
        for stack, weight in zip(prof.get("samples", []), prof.get("weights", []), strict=False):
            if not stack:
                continue
            all_w += weight
            self_w[stack[-1]] += weight
            for f in set(stack):
                total_w[f] += weight
    if not all_w:
        return []

    def name(i: int) -> str:
        f = frames[i]
        where = Path(f.get("file") or "?")
        short = "/".join(where.parts[-2:])
        return f"{f.get('name', '?')} ({short}:{f.get('line', '?')})"

    lines = [f"{all_w:.1f} s of samples holding the GIL; top by self time:"]
    lines += [f"  {w / all_w * 100:5.1f}%  {name(i)}" for i, w in self_w.most_common(n)]
    lines.append("top by total time (frames in this code tree only, entry points left out):")
    ours = [
        (i, w)
        for i, w in total_w.most_common()
        if not (frames[i].get("file") or "").endswith(("zapstream/cli.py", "zapstream/runners.py"))
        and any(
            f"/{d}/" in (frames[i].get("file") or "")
            for d in ("processors", "ingest", "sinks", "zapstream", "schemas")
        )
        and "site-packages" not in (frames[i].get("file") or "")
    ]
    lines += [f"  {w / all_w * 100:5.1f}%  {name(i)}" for i, w in ours[:n]]
    return lines
