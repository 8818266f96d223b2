"""The helpdesk notification: signature, stable body, answer classes, retries (httpx
MockTransport: no network)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from processors.handoff.client import HelpdeskClient
from processors.handoff.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    LedgerEntry,
    classify,
    headers,
    is_open,
    notification_body,
    renotify_due,
    retry_after_s,
    should_post,
    sign,
    signature_valid,
)
from schemas.handoff import HandoffEvent
from zapstream.errors import HelpdeskRefused, HelpdeskUnavailable
from zapstream.settings import Settings

T0 = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)
OPENED = HandoffEvent(
    event_id="hnd_1:opened",
    event="opened",
    handoff_id="hnd_1",
    user_id="5511987654321",
    at=T0,
    reason="asked",
    source="engine",
    text="quero falar com um atendente",
    opened_at=T0,
)


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign("k", body) == f"sha256={expected}"
    assert signature_valid("k", body, sign("k", body))
    assert not signature_valid("k", body + b" ", sign("k", body))
    assert not signature_valid("other", body, sign("k", body))
    assert not signature_valid("k", body, None)


def test_the_body_of_one_delivery_is_the_same_bytes_every_time() -> None:
    body = notification_body(OPENED, "opened")
    assert body == notification_body(OPENED.model_copy(), "opened")
    doc = orjson.loads(body)
    assert doc["event"] == "handoff.opened"
    assert doc["delivery_id"] == "hnd_1.opened"
    assert doc["user_id"] == "5511987654321"
    assert doc["text"] == "quero falar com um atendente"
    again = orjson.loads(notification_body(OPENED, "renotify"))
    assert again["delivery_id"] == "hnd_1.renotify"
    h = headers("k", body, OPENED, "opened")
    assert h[SIGNATURE_HEADER] == sign("k", body)
    assert h[DELIVERY_HEADER] == "hnd_1.opened"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "ok"), (204, "ok"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry"),
     (400, "refused"), (401, "refused"), (404, "refused"), (410, "refused"), (301, "refused")],
)  # fmt: skip
def test_408_429_and_5xx_are_retried_other_answers_refused(status: int, verdict: str) -> None:
    assert classify(status) == verdict


def test_retry_after_in_seconds_is_capped() -> None:
    assert retry_after_s("3", 30) == 3
    assert retry_after_s("999", 30) == 30
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 30) is None
    assert retry_after_s(None, 30) is None


def test_the_ledger_entry_round_trips_and_renotify_is_due_after_its_time() -> None:
    entry = LedgerEntry("notified", OPENED)
    assert LedgerEntry.decode(entry.encode()) == entry
    assert renotify_due(OPENED, 600) == T0.timestamp() + 600
    assert renotify_due(OPENED, 0) == 0.0
    with pytest.raises(ValueError, match="unknown ledger state"):
        LedgerEntry.decode(b"bogus {}")


def _client(answers: list[int], seen: list[httpx.Request], **kw: object) -> HelpdeskClient:
    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers[min(len(seen), len(answers)) - 1]
        return httpx.Response(status, headers={"retry-after": "0"} if status == 429 else {})

    settings = Settings(
        helpdesk_webhook_url="http://helpdesk.test/hook",
        handoff_notify_backoff_base_s=0.001,
        handoff_notify_backoff_cap_s=0.002,
        **kw,  # type: ignore[arg-type]
    )
    return HelpdeskClient(settings, transport=httpx.MockTransport(respond))


async def test_a_failing_helpdesk_is_retried_until_it_takes_the_notification() -> None:
    seen: list[httpx.Request] = []
    client = _client([500, 429, 200], seen)
    body = notification_body(OPENED, "opened")
    attempts = await client.deliver(body, headers("k", body, OPENED, "opened"), "hnd_1.opened")
    assert attempts == 3
    assert [r.content for r in seen] == [body] * 3
    assert {r.headers[SIGNATURE_HEADER] for r in seen} == {sign("k", body)}
    assert {r.headers[DELIVERY_HEADER] for r in seen} == {"hnd_1.opened"}
    await client.aclose()


async def test_a_refusal_is_not_retried() -> None:
    seen: list[httpx.Request] = []
    client = _client([400], seen)
    with pytest.raises(HelpdeskRefused) as caught:
        await client.deliver(b"{}", {}, "d")
    assert (caught.value.attempts, caught.value.status_code, len(seen)) == (1, 400, 1)
    assert not caught.value.retryable
    await client.aclose()


async def test_a_helpdesk_that_keeps_failing_gives_up_after_the_attempts_with_its_reason() -> None:
    seen: list[httpx.Request] = []
    client = _client([503], seen, handoff_notify_max_attempts=4)
    with pytest.raises(HelpdeskUnavailable) as caught:
        await client.deliver(b"{}", {}, "d")
    assert caught.value.attempts == 4
    assert len(seen) == 4
    assert "503" in caught.value.reason
    await client.aclose()


async def test_no_answer_at_all_is_retried_like_a_5xx() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    settings = Settings(
        helpdesk_webhook_url="http://helpdesk.test/hook",
        handoff_notify_max_attempts=2,
        handoff_notify_backoff_base_s=0.001,
    )
    client = HelpdeskClient(settings, transport=httpx.MockTransport(refuse))
    with pytest.raises(HelpdeskUnavailable) as caught:
        await client.deliver(b"{}", {}, "d")
    assert caught.value.attempts == 2
    assert caught.value.status_code is None
    await client.aclose()


async def test_retry_logs_name_the_delivery_never_the_secret_url_or_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[httpx.Request] = []
    client = _client([500, 200], seen)
    body = notification_body(OPENED, "opened")
    with caplog.at_level("DEBUG"):
        await client.deliver(body, headers("the-secret", body, OPENED, "opened"), "hnd_1.opened")
    # ours only: httpx's request log (it names the URL) is held at WARNING by
    # zapstream.log.configure_logging
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("zapstream"))
    assert "hnd_1.opened" in ours
    for leak in ("the-secret", "helpdesk.test", "5511987654321"):
        assert leak not in ours
    await client.aclose()


@pytest.mark.parametrize(
    ("state", "opened", "renotify"),
    [
        (None, True, False),  # first delivery
        ("open", False, False),  # no helpdesk was configured when it opened
        ("sending", True, False),  # a crash mid-post: again, same delivery id
        ("notified", False, True),  # a redelivered opened event posts nothing
        ("renotifying", False, True),
        ("renotified", False, False),  # renotified once only
        ("failed", True, False),  # replayed from its dead letter; never renotified
        ("closed", False, False),  # released or expired
    ],
)
def test_one_notification_per_handoff_whatever_is_delivered_again(
    state: str | None, opened: bool, renotify: bool
) -> None:
    assert should_post(state, "opened") is opened  # type: ignore[arg-type]
    assert should_post(state, "renotify") is renotify  # type: ignore[arg-type]


def test_only_closed_ledger_entries_are_not_open_handoffs() -> None:
    for state in ("open", "sending", "notified", "renotified", "failed"):
        assert is_open(LedgerEntry(state, OPENED).encode())  # type: ignore[arg-type]
    assert not is_open(LedgerEntry("closed", OPENED).encode())
