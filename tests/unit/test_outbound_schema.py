"""Outbound records: frozen v1 samples (tests/fixtures/outbound/v1) keep decoding.

Never regenerate the samples from the models: a change that breaks one is a breaking
change, which needs a new schema_version and an upgrade function in schemas.codec.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from schemas.codec import decode, encode
from schemas.outbound import DeadLetter, OutboundMessage, SendResult, outbound_id_for

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "outbound" / "v1"
SAMPLES: dict[str, type[BaseModel]] = {
    "outbound_message": OutboundMessage,
    "send_result": SendResult,
    "dead_letter": DeadLetter,
}


def test_every_outbound_sample_file_is_covered():
    assert sorted(p.stem for p in V1.glob("*.json")) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_outbound_sample_decodes_and_round_trips(name):
    record = decode(SAMPLES[name], (V1 / f"{name}.json").read_bytes())
    assert record.model_dump()["schema_version"] == 1
    assert decode(SAMPLES[name], encode(record)) == record


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_outbound_records_are_keyed_by_user(name):
    record = decode(SAMPLES[name], (V1 / f"{name}.json").read_bytes())
    assert record.key == "5511987654321"  # type: ignore[attr-defined]


def test_the_outbound_id_is_deterministic_per_turn_and_position():
    assert outbound_id_for("turn-1") == outbound_id_for("turn-1", 0)
    assert outbound_id_for("turn-1", 1) != outbound_id_for("turn-1", 0)
    assert outbound_id_for("turn-2") != outbound_id_for("turn-1")
    assert outbound_id_for("turn-1").startswith("out_")


def test_a_message_past_not_after_is_stale():
    message = decode(OutboundMessage, (V1 / "outbound_message.json").read_bytes())
    assert message.not_after is not None
    assert not message.is_stale(message.not_after)
    assert message.is_stale(message.not_after + timedelta(microseconds=1))


def test_a_dead_letter_keeps_the_whole_message_for_replay():
    message = decode(OutboundMessage, (V1 / "outbound_message.json").read_bytes()).next_attempt()
    letter = DeadLetter.of(
        message,
        reason="gave up",
        failed_at=datetime(2026, 11, 26, tzinfo=UTC),
        retryable=True,
        error_code=130429,
        status_code=429,
    )
    assert letter.attempts == 1
    assert letter.original() == message
    assert decode(DeadLetter, encode(letter)) == letter


def test_unknown_fields_are_ignored_on_decode():
    doc = (V1 / "send_result.json").read_text().replace('"outcome"', '"future_field": 1, "outcome"')
    assert decode(SendResult, doc).outcome == "sent"
