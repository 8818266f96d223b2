"""ENGINE=http: ask another service (an LLM gateway, a rules server) how to answer.

It POSTs JSON and expects JSON back:

    request  {"schema_version": 1, "now": ISO-8601, "turn": Turn, "session": Session | null}
    answer   {"intent": "faq_hours",                       (optional, default "http")
              "actions": [{"action": "send_text", "body": "..."}, ...],
              "session": {"language": "en", "handoff_active": false, ...}}  (optional)

`actions` use the `action_to_dict` form of `processors.actions`; only the session fields in
`SESSION_FIELDS` may be changed by the answer (counters and the 24-hour window stay ours).

This engine does I/O, so its `decide` is async. It never raises for the service's
sake: a timeout, an error status, a refused connection, bad JSON or an action that breaks
a WhatsApp limit all give a safe fallback reply (in the user's language) and a warning
with the reason; the conversation goes on and the policies still apply afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
import httpx
from pydantic import ValidationError

from processors.actions import Action, InvalidAction, MarkRead, SendText, action_from_dict
from processors.actions import validate_action as check_limits
from processors.engine import Decision, observe_turn
from processors.http_clients import create_http_client
from processors.retry_policy import transport_cause
from schemas.conversation import Session, Turn
from zapstream.errors import ConfigurationError

log = logging.getLogger(__name__)

REQUEST_SCHEMA_VERSION = 1
ENGINE_MAX_CONNECTIONS = 100
"""Calls to the decision service in flight at once (turns of different users)."""
SESSION_FIELDS = frozenset({"language", "handoff_active", "opted_out", "last_intent"})
FALLBACK_INTENT = "engine_error"
FALLBACK_TEXT: Mapping[str, str] = {
    "pt": "Desculpe, estou com uma instabilidade agora. Pode tentar de novo em instantes?",
    "en": "Sorry, I'm having trouble right now. Could you try again in a moment?",
}


class BadAnswer(ValueError):
    """The service answered, but not with something we can send."""


def request_body(session: Session | None, turn: Turn, now: datetime) -> dict[str, Any]:
    return {
        "schema_version": REQUEST_SCHEMA_VERSION,
        "now": now.isoformat(),
        "turn": turn.model_dump(mode="json", by_alias=True),
        "session": session.model_dump(mode="json") if session is not None else None,
    }


def parse_answer(session: Session, doc: Any) -> Decision:
    """Pure: the service's JSON answer as a Decision on top of `session` (already
    updated for the turn). Raises `BadAnswer` for anything we cannot trust."""
    if not isinstance(doc, dict):
        raise BadAnswer("the answer is not a JSON object")
    intent = doc.get("intent", "http")
    raw_actions = doc.get("actions", [])
    patch = doc.get("session") or {}
    if not isinstance(intent, str) or not isinstance(raw_actions, list):
        raise BadAnswer("`intent` must be a string and `actions` a list")
    if not isinstance(patch, dict) or not set(patch) <= SESSION_FIELDS:
        raise BadAnswer(f"`session` may only set {sorted(SESSION_FIELDS)}")
    try:
        actions = tuple(action_from_dict(a) for a in raw_actions)
        for action in actions:
            check_limits(action)
        after = session.updated(**{**patch, "last_intent": patch.get("last_intent", intent)})
    except InvalidAction as exc:
        raise BadAnswer(f"action refused: {exc}") from exc
    except ValidationError as exc:
        raise BadAnswer(f"session change refused: {exc.error_count()} error(s)") from exc
    return Decision(after, actions, intent)


def fallback_decision(session: Session, turn: Turn, default_language: str = "pt") -> Decision:
    """Mark the turn read and apologize, unless a human has the conversation."""
    actions: list[Action] = [MarkRead(message_id=turn.last_message.message_id)]
    if not session.handoff_active:
        lang = session.language or default_language
        actions.append(SendText(body=FALLBACK_TEXT.get(lang, FALLBACK_TEXT["pt"])))
    return Decision(session.updated(last_intent=FALLBACK_INTENT), tuple(actions), FALLBACK_INTENT)


class HttpEngine:
    name = "http"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
        default_language: str = "pt",
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.default_language = default_language
        self._client = client
        self._owns_client = client is None

    def _http(self) -> httpx.AsyncClient:
        # Created on first use, inside the running loop, not at import or construction.
        if self._client is None:
            self._client = create_http_client(
                max_connections=ENGINE_MAX_CONNECTIONS,
                timeout_s=self.timeout_s,
                connect_timeout_s=self.timeout_s,
            )
        return self._client

    async def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision:
        after = observe_turn(session, turn, now)
        try:
            response = await self._http().post(
                self.url, json=request_body(session, turn, now), timeout=self.timeout_s
            )
            response.raise_for_status()
            return parse_answer(after, response.json())
        except httpx.HTTPStatusError as exc:
            reason = f"status {exc.response.status_code}"
        except (httpx.HTTPError, aiohttp.ClientError, TimeoutError) as exc:
            real = transport_cause(exc)  # a refused connection is not a timeout
            if isinstance(real, httpx.TimeoutException | TimeoutError):
                reason = f"no answer within {self.timeout_s} s"
            else:
                reason = f"transport error {type(real).__name__}"
        except BadAnswer as exc:
            reason = str(exc)
        except ValueError:  # response.json() on a body that is not JSON
            reason = "the answer is not JSON"
        # The URL is not logged: it may carry a key in its query string.
        log.warning(
            "http engine fell back",
            extra={"turn_id": turn.turn_id, "reason": reason, "engine": self.name},
        )
        return fallback_decision(after, turn, self.default_language)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None


def create_engine(
    engine_http_url: str | None = None, engine_http_timeout_s: float = 5.0
) -> HttpEngine:
    """The ENGINE=http factory: ENGINE_HTTP_URL (required), ENGINE_HTTP_TIMEOUT_S."""
    if not engine_http_url:
        raise ConfigurationError("ENGINE=http needs ENGINE_HTTP_URL")
    return HttpEngine(engine_http_url, timeout_s=engine_http_timeout_s)
