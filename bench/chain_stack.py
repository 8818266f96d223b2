"""The stack under test, started from one code tree as users start it (`zapstream up`).

The benchmark drives every code tree the same way: its own `python -m zapstream.cli up`
with that tree first on PYTHONPATH (and a scratch directory as the working directory,
so neither the benchmark's tree nor a `.env` file can shadow it), then only HTTP. No
module of a tree under test is imported here, so one script measures trees whose
module layouts differ.

The stack's processes are the `up` process we started and its descendants (never
found by name); each direct child is named by its `zapstream.cli` subcommand
(sandbox, sink, worker, api) or is the broker, and grandchildren count for their
child. CPU time per process comes from psutil when it is installed, else /proc.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MODEL_CACHE = Path(__file__).resolve().parent / "out" / "models" / "embeddings"

try:  # optional: /proc is read directly without it
    import psutil  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the venv
    psutil = None

ROLES = ("broker", "worker", "embedder", "sink", "api", "sandbox", "up")
"""Columns of the CPU split: `up` is the supervisor itself (it relays every log line)."""

# Settings a developer's shell may hold that would change what is measured.
_STRIP_PREFIXES = (
    "KAFKA_",
    "WHATSAPP_",
    "GRAPH_",
    "DEBOUNCE_",
    "ENGINE",
    "SEND_",
    "LOG_",
    "BROKER",
    "WORKER",
    "SINK_",
    "SANDBOX_",
    "WEBHOOK_",
    "TOPIC_",
    "CONSUMER_",
    "PRODUCER_",
    "DATA_DIR",
    "DUCKDB_",
    "EVENT_LOOP",
    "APP_ID",
    "PYTHONPATH",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class CodeTree:
    """A checkout to measure: its path, a short label for the table, its commit."""

    path: Path
    label: str
    rev: str

    @classmethod
    def at(cls, path: str) -> CodeTree:
        root = Path(path).resolve()
        if not (root / "zapstream" / "cli.py").exists():
            raise SystemExit(f"{root} is not a zapstream checkout (no zapstream/cli.py)")
        try:
            rev = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            rev, dirty = "?", ""
        return cls(root, f"{rev}{'+' if dirty else ''}", rev)


# --- CPU time per process -------------------------------------------------------


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_children(pid: int) -> list[int]:
    """Direct children of `pid`, by the parent id in /proc/<n>/stat."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _proc_cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (its threads included)."""
    if psutil is not None:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    return _proc_cpu_seconds(pid)


def children(pid: int) -> list[int]:
    if psutil is not None:
        return [c.pid for c in psutil.Process(pid).children()]
    return _proc_children(pid)


def cmdline(pid: int) -> list[str]:
    if psutil is not None:
        return list(psutil.Process(pid).cmdline())
    return _proc_cmdline(pid)


def role_of(argv: list[str]) -> str:
    """`python -m zapstream.cli worker` is a worker; any other child of `up` (the
    tansu binary, Apache Kafka's JVM) is the broker."""
    if "zapstream.cli" in argv:
        sub = argv[argv.index("zapstream.cli") + 1 :]
        if sub and sub[0] in ROLES:
            return sub[0]
    return "broker"


_GONE: tuple[type[BaseException], ...] = (FileNotFoundError, ProcessLookupError, ValueError)
if psutil is not None:
    _GONE = (*_GONE, psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def process_tree(up_pid: int) -> dict[int, str]:
    """pid -> role for the supervisor and all its descendants."""
    tree = {up_pid: "up"}
    todo: list[tuple[int, str | None]] = [(up_pid, None)]
    while todo:
        parent, parent_role = todo.pop()
        try:
            kids = children(parent)
        except _GONE:
            continue
        for kid in kids:
            try:
                role = parent_role or role_of(cmdline(kid))
            except _GONE:
                continue
            tree[kid] = role
            todo.append((kid, role))
    return tree


@dataclass
class CpuSample:
    at: float
    seconds: dict[int, tuple[str, float]]  # pid -> (role, cpu seconds)


def sample_cpu(up_pid: int) -> CpuSample:
    out: dict[int, tuple[str, float]] = {}
    for pid, role in process_tree(up_pid).items():
        try:
            out[pid] = (role, cpu_seconds(pid))
        except _GONE:
            continue
    return CpuSample(time.monotonic(), out)


def cpu_used(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds per role between two samples. A process that started in between
    (a restarted child) counts from zero; one that ended in between is lost (said so
    by `restarted` in the report)."""
    used: dict[str, float] = collections.defaultdict(float)
    for pid, (role, secs) in after.seconds.items():
        prior = before.seconds.get(pid)
        used[role] += secs - (prior[1] if prior is not None else 0.0)
    return dict(used)


def replaced_roles(before: CpuSample, after: CpuSample) -> list[str]:
    """Roles with a process present before and gone after (a crash or restart)."""
    gone = {role for pid, (role, _) in before.seconds.items() if pid not in after.seconds}
    return sorted(gone)


# --- the stack --------------------------------------------------------------------


# JSON lines (`"level": "warning"`), uvicorn's `WARNING:` and the console format's
# `12:00:00.000 W logger: ...` (the supervisor's own lines).
_LEVEL = re.compile(r'"level":\s*"(\w+)"|^(WARNING|ERROR|CRITICAL):|\d\d\.\d{3} ([WEC]) ')
_CONSOLE = {"W": "WARNING", "E": "ERROR", "C": "CRITICAL"}


@dataclass
class UpStack:
    """`zapstream up` from one code tree, with the user's defaults plus `env`."""

    code: CodeTree
    data_dir: Path
    broker: str
    env_overrides: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    webhook_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=300))
    problems: collections.Counter[str] = field(default_factory=collections.Counter)
    problem_samples: list[str] = field(default_factory=list)
    ready_at: float | None = None
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES)}
        env.update(
            {
                "PYTHONPATH": str(self.code.path),
                "DATA_DIR": str(self.data_dir),
                "BROKER": self.broker,
                "WEBHOOK_PORT": str(self.webhook_port),
                "SANDBOX_PORT": str(self.sandbox_port),
                "SINK_WEB_PORT": str(free_port()),
                "WORKER_WEB_PORT": str(free_port()),
                # The int8 embedding model is built once per cache dir (about a minute
                # of a core): keep one across the bench's stacks, as a user's DATA_DIR
                # does across restarts, so the figures are the steady state's.
                "EMBEDDING_CACHE_DIR": str(MODEL_CACHE),
            }
        )
        env.update(self.env_overrides)
        return env

    def check_imports(self) -> str:
        """Where `zapstream` and `processors` come from under this stack's environment
        (they must be inside the code tree, not the benchmark's or an installed copy)."""
        probe = (
            "import zapstream, processors; print(zapstream.__file__); print(processors.__file__)"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env=self.env(),
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"{self.code.path}: cannot import the stack:\n{out.stderr}")
        for line in out.stdout.split():
            if not Path(line).resolve().is_relative_to(self.code.path):
                raise SystemExit(f"{self.code.path}: imports {line}, outside the tree")
        return out.stdout.split()[0]

    def start(self, timeout: float = 180.0) -> UpStack:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zapstream.cli", "up"],
            env=self.env(),
            cwd=self.data_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while self.ready_at is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"stack from {self.code.path} did not come up:\n" + self.output()
                )
            time.sleep(0.1)
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                log.write(line + "\n")
                self.tail.append(line)
                if self.ready_at is None and "zapstream is up" in line:
                    self.ready_at = time.monotonic()
                body = line.split("|", 1)[-1].strip()
                m = _LEVEL.search(body)
                level = ""
                if m:
                    level = (m.group(1) or m.group(2) or _CONSOLE[m.group(3)]).upper()
                if level in ("WARNING", "ERROR", "CRITICAL") or "Traceback" in line:
                    who = line.split("|", 1)[0].strip() if "|" in line else "up"
                    self.problems[f"{who} {level or 'traceback'}"] += 1
                    if len(self.problem_samples) < 20:
                        self.problem_samples.append(line[:400])

    def output(self) -> str:
        return "\n".join(self.tail)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self, role: str) -> list[int]:
        return [pid for pid, r in process_tree(self.pid).items() if r == role]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 90.0) -> int | None:
        """SIGTERM to the supervisor we started (it stops its children in order)."""
        if self.proc is None:
            return None
        tree: dict[int, str] = {}
        if self.proc.poll() is None:
            tree = process_tree(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.problems["up did not stop: killed"] += 1
                self.proc.kill()
                self.proc.wait()
        for pid, role in tree.items():  # what the supervisor left behind, by pid
            if pid != self.proc.pid and _alive(pid):
                self.problems[f"{role} left running after up stopped: killed"] += 1
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.proc.returncode


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
