"""The worker's local table folder: one per worker slot, held by one process at a time.

With `TABLE_STORE=rocksdb` a worker keeps its tables on disk under
`DATA_DIR/faust/<slot>` and, restarted, replays only the changelog records written
since (Faust stores each partition's changelog offset in its RocksDB). RocksDB lets
one process open a database; two workers sharing a folder would fight over its locks
at every rebalance. So a process claims its slot's folder with an advisory lock held
for its whole life; a second process asking for a busy slot gets a temporary folder
of its own (its tables then start from the changelog, as with the memory store), and
that folder is removed when it exits.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger("zapstream.worker")

_held: list[IO[bytes]] = []  # the lock files this process holds, for its whole life


def claim_state_dir(base: Path, slot: str) -> Path:
    """`base/<slot>`, locked for this process; or a fresh folder under `base` when
    another live process holds that slot."""
    if not slot or "/" in slot or slot.startswith("."):
        raise ValueError(f"WORKER_SLOT={slot!r}: use a plain name such as worker1")
    folder = base / slot
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / ".lock", "wb")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        temp = Path(tempfile.mkdtemp(prefix=f"{slot}-pid{os.getpid()}-", dir=base))
        atexit.register(shutil.rmtree, temp, ignore_errors=True)
        log.warning(
            "table folder %s is in use by another worker; this one keeps its tables in %s "
            "(recovered from the changelog, removed at exit): give each worker its own "
            "WORKER_SLOT to keep them across restarts",
            folder,
            temp,
        )
        return temp
    _held.append(lock)
    return folder
