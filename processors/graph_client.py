"""The Graph API edge: one pooled `aiohttp.ClientSession`, typed errors out.

`GraphClient.send` makes exactly one attempt; retries, pacing and dead-lettering
belong to the caller (`retry_policy`, `rate_limit`). Every failure is raised as the
`GraphError` that `retry_policy.classify` picks, with the outbound id as context.
The access token goes in a header on each request and nowhere else: never in an
error, a log line or a repr. Recipients are logged masked.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from processors.http_clients import create_session
from processors.retry_policy import classify
from schemas.outbound import OutboundMessage
from zapstream.errors import GraphError, GraphPermanentError, ReplayRefused
from zapstream.log import mask_phone
from zapstream.settings import Settings

log = logging.getLogger("zapstream.graph")

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
# A business-scoped user id: country code, a dot, alphanumerics ("US.1349...",
# parent ids "US.ENT.1181..."). Those go in `recipient`; phone numbers in `to`.
_BSUID = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$")


def is_bsuid(recipient: str) -> bool:
    return _BSUID.fullmatch(recipient) is not None


@dataclass(frozen=True, slots=True)
class SendOutcome:
    outbound_id: str
    wamid: str | None
    """`messages[0].id`; None for mark_read (Graph answers {"success": true})."""
    status_code: int
    latency_ms: float
    contact_id: str | None = None
    """`contacts[0].wa_id` (or `user_id` for a BSUID send), as Graph resolved it."""


def build_message_body(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body of `POST /{phone_number_id}/messages` for `message`.

    Raises GraphPermanentError when the payload cannot make a valid request: a
    retry would send the same bad body."""
    payload = dict(message.payload)
    if message.kind == "mark_read":
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", **payload}
        body.setdefault("message_id", message.reply_to)
        if not body["message_id"]:
            raise _bad_payload(message, "mark_read needs payload.message_id or reply_to")
        return body
    if message.kind == "media":
        present = [t for t in MEDIA_TYPES if t in payload]
        if len(present) != 1:
            raise _bad_payload(message, f"media payload needs exactly one of {MEDIA_TYPES}")
        type_ = present[0]
    else:
        type_ = message.kind
        if not isinstance(payload.get(type_), dict):
            raise _bad_payload(message, f"{type_} payload needs a {type_!r} object")
    address = "recipient" if is_bsuid(message.to) else "to"
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        address: message.to,
        "type": type_,
        **payload,
    }
    if message.reply_to and "context" not in body:
        body["context"] = {"message_id": message.reply_to}
    # Echoed back in every status webhook of this message: the join key from a
    # delivery status to the turn, even before the wamid is stored.
    body.setdefault("biz_opaque_callback_data", message.outbound_id)
    return body


def _bad_payload(message: OutboundMessage, reason: str) -> GraphPermanentError:
    return GraphPermanentError(
        f"invalid outbound payload: {reason}", outbound_id=message.outbound_id
    )


class GraphClient:
    """Sends messages and resolves media through the Graph API.

    Pass a shared aiohttp `session` to pool connections with others (it is then not
    closed here); otherwise one is created on first use, inside the event loop that
    uses it, and `aclose` closes it. Plain aiohttp rather than httpx: a send is the
    worker's one HTTP call per reply, and httpx's layer cost about 0.4 ms of CPU more
    per call (`processors.http_clients`).
    """

    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None) -> None:
        self._base = f"{settings.graph_base_url}/{settings.graph_api_version}"
        self._token = settings.whatsapp_access_token
        self._default_phone_number_id = settings.whatsapp_phone_number_id
        self._owns_session = session is None
        self._session = session
        self._max_connections = settings.graph_max_connections
        self._timeout_s = settings.send_timeout_s

    def __repr__(self) -> str:
        return f"GraphClient(base={self._base!r})"

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = create_session(
                max_connections=self._max_connections, timeout_s=self._timeout_s
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    async def send(self, message: OutboundMessage) -> SendOutcome:
        """One attempt to send `message`. Raises the classified GraphError."""
        if message.replay is not None:  # the last line before the network
            raise ReplayRefused(message.outbound_id, message.replay)
        body = build_message_body(message)
        phone_number_id = message.phone_number_id or self._default_phone_number_id
        url = f"{self._base}/{phone_number_id}/messages"
        started = time.perf_counter()
        doc, status = await self._request("POST", url, message.outbound_id, body=body)
        latency_ms = (time.perf_counter() - started) * 1000.0
        wamid, contact_id = _ids(doc)
        if wamid is None and message.kind != "mark_read":
            # Accepted (2xx) but unreadable: the message most likely went out, so a
            # retry would duplicate it. Report it sent, without a wamid.
            log.warning(
                "graph send accepted without a message id",
                extra={"outbound_id": message.outbound_id, "status_code": status},
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "graph send",
                extra={
                    "outbound_id": message.outbound_id,
                    "to": mask_phone(message.to),
                    "kind": message.kind,
                    "wamid": wamid,
                    "status_code": status,
                    "latency_ms": round(latency_ms, 1),
                },
            )
        return SendOutcome(message.outbound_id, wamid, status, latency_ms, contact_id)

    async def get_media_url(self, media_id: str) -> str:
        """The short-lived download URL of an inbound media id (`GET /{media-id}`);
        download it with `download_media`, which sends the token."""
        doc, _ = await self._request("GET", f"{self._base}/{media_id}", None)
        url = doc.get("url") if isinstance(doc, dict) else None
        if not isinstance(url, str) or not url:
            raise GraphPermanentError(f"media {media_id}: answer without a url")
        return url

    async def download_media(self, url: str) -> bytes:
        """The bytes behind a `get_media_url` URL (it needs the same bearer token)."""
        try:
            async with self._http().get(url, headers=self._headers()) as response:
                content = await response.read()
                status, headers = response.status, response.headers
        except Exception as exc:
            raise classify(None, None, {}, exc) from exc
        if 200 <= status < 300:
            return content
        raise classify(status, _json(content), headers, None)

    async def _request(
        self, method: str, url: str, outbound_id: str | None, *, body: Any = None
    ) -> tuple[Any, int]:
        headers = self._headers()
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(method, url, data=data, headers=headers) as response:
                content = await response.read()
                status, answer_headers = response.status, response.headers
        except Exception as exc:
            raise classify(None, None, {}, exc, outbound_id=outbound_id) from exc
        doc = _json(content)
        if 200 <= status < 300:
            return doc, status
        error: GraphError = classify(
            status,
            doc if isinstance(doc, dict) else None,
            answer_headers,
            None,
            outbound_id=outbound_id,
            now=time.time(),
        )
        log.info(
            "graph call failed",
            extra={
                "outbound_id": outbound_id,
                "status_code": error.status_code,
                "code": error.code,
                "retryable": error.retryable,
            },
        )
        raise error


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _ids(doc: Any) -> tuple[str | None, str | None]:
    if not isinstance(doc, dict):
        return None, None
    messages, contacts = doc.get("messages"), doc.get("contacts")
    wamid = contact_id = None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id") if isinstance(messages[0].get("id"), str) else None
    if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
        first = contacts[0]
        found = first.get("wa_id") or first.get("user_id")
        contact_id = found if isinstance(found, str) else None
    return wamid, contact_id
