from datetime import UTC, datetime
from types import SimpleNamespace

from schemas.processing import ProcessingDeadLetter
from zapstream.errors import InvalidPayload

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _event(value: bytes | None, key: bytes | None = b"5511999990000") -> SimpleNamespace:
    message = SimpleNamespace(topic="zapstream.messages.inbound.v1", partition=3, offset=41)
    return SimpleNamespace(message=message, key=key, value=value)


def test_a_dead_letter_keeps_the_record_whole_and_says_why() -> None:
    letter = ProcessingDeadLetter.for_event(
        "converse", _event(b"\xff not json"), InvalidPayload("no message_id"), attempts=1, failed_at=AT
    )
    assert (letter.topic, letter.partition, letter.offset) == ("zapstream.messages.inbound.v1", 3, 41)
    assert letter.user_id == "5511999990000"
    assert letter.value == b"\xff not json"
    assert letter.error_type == "InvalidPayload"
    assert "no message_id" in letter.reason
    assert letter.retryable is False  # a permanent error says so itself


def test_an_error_without_a_retryable_flag_counts_as_retryable_unless_told() -> None:
    event = _event(None, key=None)
    given_up = ProcessingDeadLetter.for_event("send-high", event, TimeoutError(), attempts=6, failed_at=AT)
    assert given_up.retryable is True
    assert given_up.reason == "TimeoutError"
    assert given_up.user_id is None
    assert given_up.value == b""
    told = ProcessingDeadLetter.for_event(
        "notify", event, TimeoutError(), attempts=2, failed_at=AT, reason="helpdesk down", retryable=False
    )
    assert (told.reason, told.retryable, told.attempts) == ("helpdesk down", False, 2)
