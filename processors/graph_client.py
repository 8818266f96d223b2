"""The Graph API edge: one pooled `httpx.AsyncClient` (on aiohttp's pool), typed errors out.

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

import httpx
from httpx_aiohttp import AiohttpTransport

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


def create_http_client(
    *,
    max_connections: int = 8,
    timeout_s: float = 10.0,
    connect_timeout_s: float = 3.0,
) -> httpx.AsyncClient:
    """One pooled client: httpx's interface over aiohttp's connection pool
    (`httpx_aiohttp.AiohttpTransport`). Keep-alive connections are reused across
    sends (TLS setup dominates a cold request); `pool` waits for a free connection no
    longer than a request may take.

    Why not httpx's own transport (httpcore over anyio): measured on the 2-core
    development machine, 3,000 POSTs 8 at a time to a local aiohttp server cost
    1.7-2.2 ms of CPU each (client and server) through httpcore, 0.7-0.8 ms through
    this transport (`bench/http_client_bench.py`). And httpcore's pool does work
    proportional to its connections times its requests on every request it starts or
    ends (64 concurrent requests on one client cost 3.2 ms each); aiohttp's does not."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),  # the pool's limits live there
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        headers={"User-Agent": "zapstream"},
    )


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

    Pass a shared `http` client to pool connections with others (it is then not
    closed here); otherwise one is created and `aclose` closes it.
    """

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._base = f"{settings.graph_base_url}/{settings.graph_api_version}"
        self._token = settings.whatsapp_access_token
        self._default_phone_number_id = settings.whatsapp_phone_number_id
        self._owns_http = http is None
        self._http = (
            http
            if http is not None
            else create_http_client(
                max_connections=settings.graph_max_connections, timeout_s=settings.send_timeout_s
            )
        )

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
        if self._owns_http:
            await self._http.aclose()

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
        doc, status = await self._request("POST", url, message.outbound_id, json=body)
        latency_ms = (time.perf_counter() - started) * 1000.0
        wamid, contact_id = _ids(doc)
        if wamid is None and message.kind != "mark_read":
            # Accepted (2xx) but unreadable: the message most likely went out, so a
            # retry would duplicate it. Report it sent, without a wamid.
            log.warning(
                "graph send accepted without a message id",
                extra={"outbound_id": message.outbound_id, "status_code": status},
            )
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
            response = await self._http.get(url, headers=self._headers())
        except Exception as exc:
            raise classify(None, None, {}, exc) from exc
        if response.is_success:
            return response.content
        raise classify(response.status_code, _json(response), response.headers, None)

    async def _request(
        self, method: str, url: str, outbound_id: str | None, *, json: Any = None
    ) -> tuple[Any, int]:
        try:
            response = await self._http.request(method, url, json=json, headers=self._headers())
        except Exception as exc:
            raise classify(None, None, {}, exc, outbound_id=outbound_id) from exc
        doc = _json(response)
        if response.is_success:
            return doc, response.status_code
        error: GraphError = classify(
            response.status_code,
            doc if isinstance(doc, dict) else None,
            response.headers,
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


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
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
