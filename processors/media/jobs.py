"""Pure: which inbound messages carry media to fetch, and the events that report it.

Nothing here reads a clock, the network or the disk.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from schemas.events import MessageReceived
from schemas.media import MediaFetched, MediaStatus

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
_HEX = re.compile(r"[0-9a-f]{64}")
# Graph object ids are digits; allow what could be an id and nothing that changes a
# URL's path or query ("/", "?", "#", "%", "..").
_MEDIA_ID = re.compile(r"[A-Za-z0-9_:-](?:[A-Za-z0-9_.:-]{0,126}[A-Za-z0-9_:-])?")


@dataclass(frozen=True, slots=True)
class MediaJob:
    """One media id to fetch, with what the webhook already told about it."""

    media_id: str
    message_id: str
    user_id: str
    phone_number_id: str | None
    media_type: str
    mime_type: str | None
    sha256: str | None
    """Hex, from the webhook (Meta sends it base64 there), when given and well formed."""
    filename: str | None


def media_job(message: MessageReceived) -> MediaJob | None:
    """The media to fetch for `message`, or None (not a media message, or no id)."""
    media = message.media
    if message.type not in MEDIA_TYPES or media is None or not media.id:
        return None
    return MediaJob(
        media_id=media.id,
        message_id=message.message_id,
        user_id=message.user_id,
        phone_number_id=message.phone_number_id,
        media_type=message.type,
        mime_type=media.mime_type,
        sha256=normalize_sha256(media.sha256),
        filename=media.filename,
    )


def valid_media_id(media_id: str) -> bool:
    """Safe to put in a Graph URL's path: no slash, query, escape or `..`."""
    return _MEDIA_ID.fullmatch(media_id) is not None and ".." not in media_id


def normalize_sha256(value: str | None) -> str | None:
    """Lower-case hex of a sha256 given as hex (Graph's media lookup) or base64 (the
    webhook's `sha256`); None when absent or not a sha256 at all."""
    if not value:
        return None
    text = value.strip()
    if _HEX.fullmatch(text.lower()):
        return text.lower()
    padded = text + "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):  # standard base64, then the URL-safe alphabet
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        return raw.hex() if len(raw) == 32 else None
    return None


def relative_path(sha256: str) -> str:
    """Where bytes of this hex sha256 live, relative to MEDIA_DIR."""
    if not _HEX.fullmatch(sha256):
        raise ValueError("not a lower-case hex sha256")
    return f"{sha256[:2]}/{sha256}"


def media_event(
    job: MediaJob,
    status: MediaStatus,
    *,
    at: datetime,
    mime_type: str | None = None,
    size_bytes: int | None = None,
    sha256: str | None = None,
    reason: str | None = None,
    attempts: int = 0,
) -> MediaFetched:
    """The report of `job`: `path` is set exactly when the bytes are stored."""
    return MediaFetched(
        media_id=job.media_id,
        message_id=job.message_id,
        user_id=job.user_id,
        phone_number_id=job.phone_number_id,
        media_type=job.media_type,
        status=status,
        mime_type=mime_type or job.mime_type,
        size_bytes=size_bytes,
        sha256=sha256 or job.sha256,
        path=relative_path(sha256) if status == "stored" and sha256 else None,
        filename=job.filename,
        reason=reason[:1000] if reason else None,
        attempts=attempts,
        fetched_at=at,
    )
