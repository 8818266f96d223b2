"""What an engine asks for: frozen action records, and their Graph API message fields.

Engines return these; the agent routes them (sends to the outbound topic, handoff and
embedding requests to theirs). They are pydantic models with an `action` discriminator so
that `action_to_dict` / `action_from_dict` round-trip them through topics and the sink.

Construction is lenient on purpose: a stored action always decodes. The WhatsApp limits are
checked by `validate_action` (called by `outbound_payload`, by the playbook at load and by
the HTTP engine on every answer), which raises `InvalidAction`, a `PermanentError`: a send
that breaks a limit would be refused by Meta (error 131009 / 100) however often we retry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from zapstream.errors import InvalidPayload

# Cloud API limits (characters), from the message-object reference.
TEXT_BODY_MAX = 4096
INTERACTIVE_BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_TEXT_MAX = 60
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
LIST_BUTTON_MAX = 20
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
SECTION_TITLE_MAX = 24
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
CAPTION_MAX = 1024


class InvalidAction(InvalidPayload):
    """An action that breaks a WhatsApp limit or does not decode: dead-letter it."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"{action}: {reason}")
        self.action = action


class _Action(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SendText(_Action):
    action: Literal["send_text"] = "send_text"
    body: str
    preview_url: bool = False
    reply_to: str | None = None
    """Message id to quote (Graph `context.message_id`)."""


class SendButtons(_Action):
    action: Literal["send_buttons"] = "send_buttons"
    body: str
    buttons: tuple[tuple[str, str], ...]
    """(id, title) pairs: the id comes back as `reply.id` when the user taps."""
    header: str | None = None
    footer: str | None = None
    reply_to: str | None = None


class ListRow(_Action):
    id: str
    title: str
    description: str | None = None


class ListSection(_Action):
    title: str | None = None
    rows: tuple[ListRow, ...]


class SendList(_Action):
    action: Literal["send_list"] = "send_list"
    body: str
    button: str
    sections: tuple[ListSection, ...]
    header: str | None = None
    footer: str | None = None
    reply_to: str | None = None


class SendTemplate(_Action):
    action: Literal["send_template"] = "send_template"
    name: str
    language: str = "pt_BR"
    components: tuple[dict[str, Any], ...] = ()


MediaKind = Literal["image", "document", "audio", "video", "sticker"]


class SendMedia(_Action):
    action: Literal["send_media"] = "send_media"
    kind: MediaKind
    link: str | None = None
    media_id: str | None = None
    caption: str | None = None
    filename: str | None = None
    reply_to: str | None = None


class MarkRead(_Action):
    action: Literal["mark_read"] = "mark_read"
    message_id: str
    typing_indicator: bool = True
    """Show "typing…" until our reply arrives (or ~25 s pass)."""


class RequestHandoff(_Action):
    action: Literal["request_handoff"] = "request_handoff"
    reason: str


class EmbedText(_Action):
    action: Literal["embed_text"] = "embed_text"
    message_id: str
    text: str
    language: str | None = None


Send = SendText | SendButtons | SendList | SendTemplate | SendMedia
"""Messages delivered to the user: these are what the 24-hour window and opt-out govern."""
Outbound = Send | MarkRead
"""Everything that becomes a Graph API call."""
Action = Send | MarkRead | RequestHandoff | EmbedText

_ADAPTER: TypeAdapter[Action] = TypeAdapter(
    Annotated[Action, Field(discriminator="action")]  # type: ignore[arg-type]
)
SEND_TYPES: tuple[type[_Action], ...] = (SendText, SendButtons, SendList, SendTemplate, SendMedia)
FREE_FORM_TYPES: tuple[type[_Action], ...] = (SendText, SendButtons, SendList, SendMedia)
"""Sends that need an open customer-service window (everything but templates)."""


def action_to_dict(action: Action) -> dict[str, Any]:
    return action.model_dump(mode="json")


def action_from_dict(doc: Any) -> Action:
    try:
        return _ADAPTER.validate_python(doc)
    except ValidationError as exc:
        kind = doc.get("action", "?") if isinstance(doc, dict) else type(doc).__name__
        raise InvalidAction(str(kind), f"does not decode: {exc.error_count()} error(s)") from exc


def _check(action: str, ok: bool, reason: str) -> None:
    if not ok:
        raise InvalidAction(action, reason)


def _check_len(action: str, field: str, value: str | None, limit: int, *, required: bool) -> None:
    if value is None or value == "":
        _check(action, not required, f"{field} is empty")
        return
    _check(action, len(value) <= limit, f"{field} has {len(value)} characters (limit {limit})")


def validate_action(action: Action) -> None:
    """Raise `InvalidAction` if Meta would refuse this action; return None otherwise."""
    a = action.action
    if isinstance(action, SendText):
        _check_len(a, "body", action.body, TEXT_BODY_MAX, required=True)
    elif isinstance(action, SendButtons | SendList):
        _check_len(a, "body", action.body, INTERACTIVE_BODY_MAX, required=True)
        _check_len(a, "header", action.header, HEADER_TEXT_MAX, required=False)
        _check_len(a, "footer", action.footer, FOOTER_TEXT_MAX, required=False)
        if isinstance(action, SendButtons):
            _validate_buttons(action)
        else:
            _validate_list(action)
    elif isinstance(action, SendTemplate):
        _check(a, bool(action.name), "template name is empty")
        _check(a, bool(action.language), "template language is empty")
    elif isinstance(action, SendMedia):
        _check(a, (action.link is None) != (action.media_id is None), "give link or media_id")
        _check_len(a, "caption", action.caption, CAPTION_MAX, required=False)
        _check(
            a,
            action.caption is None or action.kind in ("image", "document", "video"),
            f"{action.kind} cannot have a caption",
        )
        _check(a, action.filename is None or action.kind == "document", "filename is for documents")
    elif isinstance(action, MarkRead):
        _check(a, bool(action.message_id), "message_id is empty")


def _validate_buttons(action: SendButtons) -> None:
    a = action.action
    _check(a, 1 <= len(action.buttons) <= BUTTONS_MAX, f"{len(action.buttons)} buttons (1 to 3)")
    for button_id, title in action.buttons:
        _check_len(a, "button id", button_id, BUTTON_ID_MAX, required=True)
        _check_len(a, f"button title {title!r}", title, BUTTON_TITLE_MAX, required=True)
    # Meta refuses duplicate ids or titles (the reply could not be told apart).
    _check(a, len({b[0] for b in action.buttons}) == len(action.buttons), "duplicate button ids")
    _check(a, len({b[1] for b in action.buttons}) == len(action.buttons), "duplicate titles")


def _validate_list(action: SendList) -> None:
    a = action.action
    _check_len(a, "button", action.button, LIST_BUTTON_MAX, required=True)
    n_sections = len(action.sections)
    _check(a, 1 <= n_sections <= LIST_SECTIONS_MAX, f"{n_sections} sections (1 to 10)")
    rows = [row for section in action.sections for row in section.rows]
    _check(a, 1 <= len(rows) <= LIST_ROWS_MAX, f"{len(rows)} rows in all (1 to 10)")
    _check(a, len({r.id for r in rows}) == len(rows), "duplicate row ids")
    for section in action.sections:
        _check(a, bool(section.rows), "a section has no rows")
        # A title is optional only when there is a single section.
        _check_len(a, "section title", section.title, SECTION_TITLE_MAX, required=n_sections > 1)
    for row in rows:
        _check_len(a, "row id", row.id, ROW_ID_MAX, required=True)
        _check_len(a, f"row title {row.title!r}", row.title, ROW_TITLE_MAX, required=True)
        _check_len(a, "row description", row.description, ROW_DESCRIPTION_MAX, required=False)


def _interactive(action: SendButtons | SendList, inner: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": inner.pop("type"), "body": {"text": action.body}}
    if action.header:
        doc["header"] = {"type": "text", "text": action.header}
    if action.footer:
        doc["footer"] = {"text": action.footer}
    doc["action"] = inner
    return doc


def outbound_payload(action: Action) -> tuple[str, dict[str, Any]]:
    """(Graph message `type`, the request fields for it), validated.

    The sender adds `messaging_product: "whatsapp"` (and `to` / `recipient_type` for
    messages). `MarkRead` gives kind "read" and the status-update body, posted to the same
    /messages endpoint. Internal actions (handoff, embedding) are not Graph calls and raise.
    """
    validate_action(action)
    body: dict[str, Any]
    if isinstance(action, SendText):
        kind = "text"
        body = {"text": {"body": action.body, "preview_url": action.preview_url}}
    elif isinstance(action, SendButtons):
        kind = "interactive"
        buttons = [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in action.buttons]
        body = {"interactive": _interactive(action, {"type": "button", "buttons": buttons})}
    elif isinstance(action, SendList):
        kind = "interactive"
        sections = [s.model_dump(mode="json", exclude_none=True) for s in action.sections]
        inner = {"type": "list", "button": action.button, "sections": sections}
        body = {"interactive": _interactive(action, inner)}
    elif isinstance(action, SendTemplate):
        kind = "template"
        template: dict[str, Any] = {"name": action.name, "language": {"code": action.language}}
        if action.components:
            template["components"] = list(action.components)
        body = {"template": template}
    elif isinstance(action, SendMedia):
        kind = action.kind
        media: dict[str, Any] = {"link": action.link} if action.link else {"id": action.media_id}
        if action.caption:
            media["caption"] = action.caption
        if action.filename:
            media["filename"] = action.filename
        body = {kind: media}
    elif isinstance(action, MarkRead):
        read: dict[str, Any] = {"status": "read", "message_id": action.message_id}
        if action.typing_indicator:
            read["typing_indicator"] = {"type": "text"}
        return "read", read
    else:
        raise InvalidAction(action.action, "not a Graph API message")
    reply_to = action.reply_to if not isinstance(action, SendTemplate) else None
    payload: dict[str, Any] = {"type": kind, **body}
    if reply_to:
        payload["context"] = {"message_id": reply_to}
    return kind, payload
