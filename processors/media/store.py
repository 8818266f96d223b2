"""Media on disk, content-addressed: `<MEDIA_DIR>/<sha256[:2]>/<sha256>`.

A download is written to a temp file in `<MEDIA_DIR>/.tmp/`, hashed and counted as
it arrives (`PartFile`), and only a complete file whose sha256 is Meta's is renamed
into place (same folder tree, so the rename is atomic). So a file at its sha256's
path always holds exactly those bytes: its presence is proof the media is stored,
the same bytes land once whatever media ids carry them, and a crash leaves at most
a `.part` file behind (removed after an hour by `prune_parts`). With MEDIA_RETENTION_S
set, files older than that are deleted (`prune_older_than`).

Files are created 0640 and folders 0750: they are customers' media.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from processors.media.jobs import relative_path
from zapstream.errors import MediaIntegrityError, MediaTooLarge

log = logging.getLogger("zapstream.media")

TMP = ".tmp"
PART_MAX_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int
    path: str
    """Relative to MEDIA_DIR."""
    stored_at: datetime
    """The file's modification time: when these bytes first landed."""


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def find(self, sha256: str) -> StoredFile | None:
        """The stored file of these bytes, if present."""
        rel = relative_path(sha256)
        try:
            st = (self.root / rel).stat()
        except FileNotFoundError:
            return None
        return StoredFile(sha256, st.st_size, rel, datetime.fromtimestamp(st.st_mtime, UTC))

    def part(self, media_id: str, limit: int, expected_sha256: str | None) -> PartFile:
        tmp = self.root / TMP
        tmp.mkdir(parents=True, exist_ok=True, mode=0o750)
        return PartFile(self, media_id, limit, expected_sha256, tmp / f"{uuid.uuid4().hex}.part")

    def prune_parts(self, now: float, max_age_s: float = PART_MAX_AGE_S) -> int:
        """Remove temp files left by a crash (older than `max_age_s`)."""
        removed = 0
        for path in (self.root / TMP).glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > max_age_s:
                    path.unlink()
                    removed += 1
        return removed

    def prune_older_than(self, now: float, max_age_s: float) -> tuple[int, int]:
        """Delete stored files first stored more than `max_age_s` ago (by their
        modification time); returns (files, bytes) removed. Blocking: run it on a
        thread. Safe while downloads run and from several workers at once: a file is
        only ever replaced by the same bytes, and a vanished one is skipped."""
        files = size = 0
        for folder in self.root.glob("[0-9a-f][0-9a-f]"):
            for path in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    if now - st.st_mtime > max_age_s:
                        path.unlink()
                        files, size = files + 1, size + st.st_size
        return files, size


class PartFile:
    """One download in progress. `write` each chunk (raises MediaTooLarge past the
    limit), then `commit` (verifies the sha256, moves the file into place) or
    `discard`. Use it as a context manager: leaving without a commit discards it."""

    def __init__(
        self, store: MediaStore, media_id: str, limit: int, expected: str | None, path: Path
    ) -> None:
        self.store = store
        self.media_id = media_id
        self.limit = limit
        self.expected = expected
        self.path = path
        self.size = 0
        self._hash = hashlib.sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self._file = os.fdopen(fd, "wb")
        self._done = False

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.discard()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise MediaTooLarge(self.media_id, None, self.limit)
        self._hash.update(chunk)
        self._file.write(chunk)

    async def commit(self) -> StoredFile:
        """Move the complete file to its sha256's path (fsync and rename on a thread:
        a large file's fsync must not stall the event loop)."""
        sha = self._hash.hexdigest()
        if self.expected is not None and sha != self.expected:
            self.discard()
            raise MediaIntegrityError(self.media_id, self.expected, sha)
        await asyncio.to_thread(self._finish, sha)
        self._done = True
        found = self.store.find(sha)
        assert found is not None
        return found

    def _finish(self, sha: str) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        dest = self.store.root / relative_path(sha)
        if dest.exists():  # the same bytes landed before (another media id): keep those
            self.path.unlink()
            return
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        os.replace(self.path, dest)

    def discard(self) -> None:
        self._done = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
