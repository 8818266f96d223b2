"""Stored v1 records (tests/fixtures/events/v1) must keep decoding: replay reads old topics.

These files are frozen. Never regenerate them from the current models: an edit that makes
one fail is a breaking change, which needs a new schema_version and an upgrade function.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from schemas.codec import decode, encode
from schemas.events import MessageReceived, StatusReceived, WebhookUnrecognized
from zapstream.errors import InvalidPayload

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "v1"

SAMPLES: dict[str, type[BaseModel]] = {
    "message_received": MessageReceived,
    "message_received_minimal": MessageReceived,
    "status_received": StatusReceived,
    "status_received_minimal": StatusReceived,
    "webhook_unrecognized": WebhookUnrecognized,
}


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((V1 / f"{name}.json").read_text())
    return doc


def test_every_v1_sample_file_is_covered() -> None:
    assert sorted(p.stem for p in V1.glob("*.json")) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_v1_sample_decodes_from_bytes(name: str) -> None:
    raw = (V1 / f"{name}.json").read_bytes()
    event = decode(SAMPLES[name], raw)
    assert event.model_dump()["schema_version"] == 1
    assert decode(SAMPLES[name], encode(event)) == event


def test_the_v1_message_sample_keeps_its_meaning() -> None:
    message = decode(MessageReceived, sample("message_received"))
    assert (message.key, message.wa_id, message.bsuid) == (
        "5511987654321",
        "5511987654321",
        "BR.13491208655302741918",
    )
    assert message.type == "interactive"
    assert message.text == "Sim, confirmar"
    assert message.reply is not None
    assert (message.reply.kind, message.reply.id) == ("button_reply", "confirm_order_yes")
    assert message.context is not None
    assert message.context.message_id is not None
    assert message.context.message_id.startswith("wamid.")
    assert message.sent_at == datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)


def test_a_minimal_v1_message_gets_defaults_for_everything_optional() -> None:
    message = decode(MessageReceived, sample("message_received_minimal"))
    assert message.user_id == "5511987654321"
    assert (message.wa_id, message.bsuid, message.text, message.media) == (None, None, None, None)
    assert message.errors == []
    assert message.raw["text"]["body"].startswith("Oi!")


def test_the_v1_status_sample_keeps_its_meaning() -> None:
    status = decode(StatusReceived, sample("status_received"))
    assert (status.status, status.key) == ("sent", "5511987654321")
    assert status.event_id.endswith(":sent")
    assert (status.conversation_origin, status.pricing_category) == ("service", "service")
    assert status.conversation_expires_at == datetime(2025, 6, 9, 21, 0, tzinfo=UTC)


def test_a_minimal_v1_failed_status_keeps_its_raw_errors() -> None:
    status = decode(StatusReceived, sample("status_received_minimal"))
    assert status.status == "failed"
    assert status.errors == []  # not normalized by that writer: raw still has them
    assert status.raw["errors"][0]["code"] == 131047


def test_the_v1_unrecognized_sample_keeps_its_raw_item() -> None:
    unknown = decode(WebhookUnrecognized, sample("webhook_unrecognized"))
    assert unknown.field == "message_template_status_update"
    assert unknown.raw["value"]["event"] == "APPROVED"
    assert len(unknown.event_id) == 64


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_unknown_fields_from_a_newer_writer_are_ignored(name: str) -> None:
    doc = sample(name)
    newer = {**doc, "added_by_a_newer_writer": {"anything": [1, 2]}, "another_one": None}
    assert decode(SAMPLES[name], newer) == decode(SAMPLES[name], doc)


def test_unknown_fields_inside_nested_records_are_ignored() -> None:
    doc = sample("message_received")
    doc["reply"] = {**doc["reply"], "newer_reply_field": "x"}
    doc["context"] = {**doc["context"], "newer_context_field": True}
    message = decode(MessageReceived, doc)
    assert message.reply is not None
    assert message.reply.id == "confirm_order_yes"


def test_a_sample_missing_a_required_field_is_an_invalid_payload() -> None:
    doc = sample("message_received")
    del doc["user_id"]
    with pytest.raises(InvalidPayload, match="message_received"):
        decode(MessageReceived, doc)


# --- status_ids: the two fields an in-doubt send looks for, without building the model
@pytest.mark.parametrize("name", ["status_received", "status_received_minimal"])
def test_status_ids_read_the_same_ids_as_a_full_decode(name: str) -> None:
    from schemas.events import status_ids

    raw = (V1 / f"{name}.json").read_bytes()
    full = decode(StatusReceived, raw)
    assert status_ids(raw) == (full.biz_opaque_callback_data, full.wamid)


def test_status_ids_of_a_status_parsed_from_a_sandbox_webhook() -> None:
    from ingest.parse import parse_webhook
    from schemas.events import status_ids
    from zapstream.sandbox.graph import status_payload

    request = {"to": "5511987654321", "type": "text", "biz_opaque_callback_data": "out_abc"}
    payload = status_payload(
        "delivered",
        wamid="wamid.XYZ",
        request=request,
        now=1_700_000_000,
        waba_id="1",
        phone_number_id="2",
        display_phone_number="15550001111",
    )
    (status,) = parse_webhook(payload, datetime.now(UTC)).statuses
    assert status_ids(encode(status)) == ("out_abc", "wamid.XYZ")


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'{"schema_version": 1}', b'{"wamid": 7}', b'{"schema_version": 2}'],
    ids=["not-json", "not-object", "no-wamid", "wamid-not-text", "unknown-version"],
)
def test_status_ids_refuse_what_is_not_a_status(raw: bytes) -> None:
    from schemas.events import status_ids

    with pytest.raises(InvalidPayload):
        status_ids(raw)
