"""Records about inbound media: what the media agent did with one media id.

Same rules as `schemas.events`: explicit `schema_version`, additive changes keep it,
unknown fields are ignored on decode, nothing is renamed or reused.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from schemas.events import Event

MediaStatus = Literal["stored", "refused", "failed"]


class MediaFetched(Event):
    """The outcome of fetching one inbound media id (`{prefix}.media.v1`, keyed by user):

    - `stored`: the bytes are at `<MEDIA_DIR>/<path>` (content-addressed, sha256 checked);
    - `refused`: not downloaded, by policy (`reason`: over MEDIA_MAX_BYTES, say);
    - `failed`: Graph refused it (4xx) or kept failing; the inbound record is also in
      the processing dead letters with the same reason.

    A media id may be reported more than once (a redelivered webhook, a replay): the
    sink keeps the latest report per media id."""

    KIND: ClassVar[str] = "media_fetched"
    schema_version: Literal[1] = 1
    media_id: str
    message_id: str
    user_id: str
    phone_number_id: str | None = None
    media_type: str
    """image | audio | video | document | sticker (the message's `type`)."""
    status: MediaStatus
    mime_type: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    sha256: str | None = None
    """Hex sha256 of the stored bytes (of Meta's declared bytes when not stored)."""
    path: str | None = None
    """Relative to MEDIA_DIR: `<sha256[:2]>/<sha256>`; None unless stored."""
    filename: str | None = None
    """The document's file name, as the user sent it."""
    reason: str | None = None
    attempts: int = Field(default=0, ge=0)
    """Graph lookups made for this report (0: the bytes were already on disk)."""
    fetched_at: datetime

    @property
    def key(self) -> str:
        return self.user_id
