"""parse_webhook: Cloud API bodies (tests/fixtures/webhooks) to normalized events."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.parse import ParsedWebhook, fingerprint, parse_webhook
from schemas.codec import decode, encode
from schemas.events import MessageReceived, StatusReceived

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json"))
RECEIVED_AT = datetime(2025, 6, 8, 21, 0, 5, tzinfo=UTC)
SENT_AT = datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)  # "timestamp": "1749416383"

WA_ID = "5511987654321"
BSUID = "BR.13491208655302741918"
PHONE_NUMBER_ID = "100000000000001"
WABA_ID = "100000000000002"
OUTBOUND = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjQxQjY3OTA5NkNFQTg1NDE2MwA="


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def parse(name: str) -> ParsedWebhook:
    return parse_webhook(load(name), RECEIVED_AT)


def only_message(name: str) -> MessageReceived:
    parsed = parse(name)
    assert parsed.statuses == []
    assert parsed.unrecognized == []
    assert len(parsed.messages) == 1
    return parsed.messages[0]


def only_status(name: str) -> StatusReceived:
    parsed = parse(name)
    assert parsed.messages == []
    assert parsed.unrecognized == []
    assert len(parsed.statuses) == 1
    return parsed.statuses[0]


def first_message_item(name: str) -> dict[str, Any]:
    item: dict[str, Any] = load(name)["entry"][0]["changes"][0]["value"]["messages"][0]
    return item


# Messages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "msg_type", "text"),
    [
        ("message_text", "text", "Oi! Vocês têm esse tênis no tamanho 42?"),
        ("message_text_forwarded", "text", "Promoção imperdível, repassa!"),
        ("message_image", "image", "Este modelo aqui"),
        ("message_audio_voice", "audio", None),
        ("message_video", "video", "Olha o defeito na costura"),
        ("message_document", "document", "Segue o comprovante"),
        ("message_sticker_animated", "sticker", None),
        ("message_location", "location", "Museu de Arte de São Paulo"),
        ("message_contacts", "contacts", "João Pereira"),
        ("message_interactive_button_reply", "interactive", "Sim, confirmar"),
        ("message_interactive_list_reply", "interactive", "Tamanho 42"),
        ("message_interactive_nfm_reply", "interactive", "Sent"),
        ("message_button_quick_reply", "button", "Parar promoções"),
        ("message_reaction", "reaction", "\U0001f44d"),
        ("message_reaction_removed", "reaction", None),
        ("message_order", "order", "Pode entregar amanhã?"),
        (
            "message_system_user_changed_number",
            "system",
            "User Maria Souza changed from 5511987654321 to 5511976543210",
        ),
        ("message_referral_ctwa", "text", "Olá! Quero saber mais sobre a promoção de inverno."),
        ("message_unsupported", "unsupported", None),
        ("message_unknown_type", "poll_vote", None),
        ("message_group_text", "text", "Alguém sabe o horário da loja no feriado?"),
    ],
)
def test_each_message_fixture_gives_one_message_with_its_type_and_text(
    fixture: str, msg_type: str, text: str | None
) -> None:
    message = only_message(fixture)
    assert message.type == msg_type
    assert message.text == text
    assert message.user_id == WA_ID
    assert message.wa_id == WA_ID
    assert message.phone_number_id == PHONE_NUMBER_ID
    assert message.raw == first_message_item(fixture)


def test_a_text_message_carries_user_business_and_times() -> None:
    message = only_message("message_text")
    assert message.message_id.startswith("wamid.HBgN")
    assert message.key == WA_ID
    assert message.bsuid == BSUID
    assert message.profile_name == "Maria Souza"
    assert message.username is None
    assert message.display_phone_number == "551140028922"
    assert message.waba_id == WABA_ID
    assert message.sent_at == SENT_AT
    assert message.sent_at.tzinfo is not None
    assert message.received_at == RECEIVED_AT
    assert message.context is None
    assert message.errors == []


def test_a_forwarded_text_keeps_the_forwarding_flags() -> None:
    context = only_message("message_text_forwarded").context
    assert context is not None
    assert context.forwarded is True
    assert context.frequently_forwarded is True
    assert context.message_id is None


def test_an_image_exposes_its_media_id_mime_type_and_caption() -> None:
    media = only_message("message_image").media
    assert media is not None
    assert media.id == "1003383421387256"
    assert media.mime_type == "image/jpeg"
    assert media.caption == "Este modelo aqui"
    assert media.url is not None
    assert media.url.startswith("https://lookaside.fbsbx.com/")


def test_a_voice_note_is_audio_flagged_as_voice() -> None:
    media = only_message("message_audio_voice").media
    assert media is not None
    assert (media.id, media.voice, media.mime_type) == (
        "1211389846931232",
        True,
        "audio/ogg; codecs=opus",
    )


def test_a_video_and_a_document_keep_their_media_fields() -> None:
    video = only_message("message_video").media
    document = only_message("message_document").media
    assert video is not None
    assert document is not None
    assert (video.id, video.mime_type) == ("1488932145678901", "video/mp4")
    assert (document.id, document.filename) == ("1090576012345678", "comprovante-pix-junho.pdf")
    assert document.mime_type == "application/pdf"


def test_an_animated_sticker_is_flagged_animated() -> None:
    media = only_message("message_sticker_animated").media
    assert media is not None
    assert (media.id, media.animated, media.mime_type) == ("2157923648390011", True, "image/webp")


def test_a_location_has_coordinates_name_and_address() -> None:
    location = only_message("message_location").location
    assert location is not None
    assert (location.latitude, location.longitude) == (-23.561414, -46.655881)
    assert location.name == "Museu de Arte de São Paulo"
    assert location.address is not None
    assert location.address.startswith("Av. Paulista, 1578")


def test_shared_contacts_are_kept_as_cards() -> None:
    message = only_message("message_contacts")
    assert message.contacts is not None
    assert len(message.contacts) == 1
    assert message.contacts[0]["phones"][0]["wa_id"] == "5519912345678"
    # The shared card is not the sender: the sender still comes from `from`.
    assert message.profile_name == "Maria Souza"


def test_a_button_reply_has_its_id_title_and_the_message_it_answers() -> None:
    message = only_message("message_interactive_button_reply")
    assert message.reply is not None
    assert (message.reply.kind, message.reply.id, message.reply.title) == (
        "button_reply",
        "confirm_order_yes",
        "Sim, confirmar",
    )
    assert message.context is not None
    assert message.context.message_id == OUTBOUND
    assert message.context.from_ == "551140028922"


def test_a_list_reply_has_its_id_title_and_description() -> None:
    reply = only_message("message_interactive_list_reply").reply
    assert reply is not None
    assert (reply.kind, reply.id, reply.title, reply.description) == (
        "list_reply",
        "size_42",
        "Tamanho 42",
        "Em estoque: 3 pares",
    )


def test_a_flow_reply_keeps_the_response_json() -> None:
    message = only_message("message_interactive_nfm_reply")
    assert message.reply is not None
    assert message.reply.kind == "nfm_reply"
    assert message.reply.title == "flow"
    assert message.reply.response_json is not None
    answers = json.loads(message.reply.response_json)
    assert answers == {
        "flow_token": "agendamento-7781",
        "delivery_date": "2025-06-12",
        "period": "manha",
    }
    assert message.context is not None
    assert message.context.message_id == OUTBOUND


def test_a_template_quick_reply_button_has_its_payload_and_text() -> None:
    message = only_message("message_button_quick_reply")
    assert message.reply is not None
    assert (message.reply.kind, message.reply.id, message.reply.title) == (
        "button",
        "STOP_PROMOTIONS",
        "Parar promoções",
    )
    assert message.context is not None
    assert message.context.message_id == OUTBOUND


def test_a_reaction_points_at_the_reacted_message() -> None:
    reaction = only_message("message_reaction").reaction
    assert reaction is not None
    assert (reaction.message_id, reaction.emoji) == (OUTBOUND, "\U0001f44d")


def test_a_removed_reaction_has_no_emoji() -> None:
    message = only_message("message_reaction_removed")
    assert message.reaction is not None
    assert (message.reaction.message_id, message.reaction.emoji) == (OUTBOUND, None)


def test_an_order_keeps_its_catalog_and_items() -> None:
    order = only_message("message_order").order
    assert order is not None
    assert order["catalog_id"] == "1234567890123456"
    assert [i["product_retailer_id"] for i in order["product_items"]] == [
        "TENIS-RUN-42",
        "MEIA-KIT-3",
    ]


def test_a_changed_number_system_message_needs_no_contacts() -> None:
    message = only_message("message_system_user_changed_number")
    assert message.profile_name is None
    assert message.bsuid == BSUID
    assert message.system is not None
    assert (message.system["type"], message.system["wa_id"]) == (
        "user_changed_number",
        "5511976543210",
    )


def test_a_changed_bsuid_system_message_is_keyed_by_the_old_bsuid() -> None:
    message = only_message("message_system_user_changed_user_id")
    assert (message.user_id, message.wa_id, message.bsuid) == (BSUID, None, BSUID)
    assert message.system is not None
    assert message.system["type"] == "user_changed_user_id"
    assert message.system["user_id"] == "BR.26084719935024187730"
    assert message.text is not None
    assert message.text.endswith("BR.26084719935024187730")


def test_a_click_to_whatsapp_ad_keeps_its_referral() -> None:
    message = only_message("message_referral_ctwa")
    assert message.referral is not None
    assert message.referral["source_type"] == "ad"
    assert message.referral["source_id"] == "120210000000000001"
    assert message.referral["ctwa_clid"].startswith("ARAkLkA8")


def test_an_unsupported_message_keeps_its_type_and_parsed_errors() -> None:
    message = only_message("message_unsupported")
    assert [(e.code, e.title, e.details) for e in message.errors] == [
        (131051, "Message type unknown", "Message type is currently not supported.")
    ]
    assert message.raw["unsupported"] == {"type": "edit"}


def test_an_unknown_message_type_is_still_a_message_with_raw_kept() -> None:
    message = only_message("message_unknown_type")
    assert message.type == "poll_vote"
    assert message.raw["poll_vote"]["selected_options"][0]["id"] == "opt_2"


def test_a_group_message_has_its_group_id_and_identity_key_hash() -> None:
    message = only_message("message_group_text")
    assert message.group_id == "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjMzOTQzMjAxMjk4NjE="
    assert message.identity_key_hash == "DF2lS5v2W6x="
    assert message.user_id == WA_ID


def test_a_user_without_a_phone_number_is_keyed_by_bsuid() -> None:
    message = only_message("message_bsuid_only")
    assert message.user_id == "BR.90817263544536271809"
    assert message.key == "BR.90817263544536271809"
    assert message.wa_id is None
    assert message.bsuid == "BR.90817263544536271809"
    assert message.parent_bsuid == "BR.ENT.506847293015824"
    assert (message.username, message.profile_name) == ("@ana.costa", "Ana")


def test_a_bsuid_only_message_takes_the_phone_from_a_matching_contact() -> None:
    body = load("message_text")
    del body["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
    message = parse_webhook(body, RECEIVED_AT).messages[0]
    assert (message.user_id, message.wa_id, message.bsuid) == (WA_ID, WA_ID, BSUID)


def test_the_contact_is_matched_by_id_not_by_position() -> None:
    body = load("batch_two_entries")
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"].reverse()
    names = [(m.wa_id, m.profile_name) for m in parse_webhook(body, RECEIVED_AT).messages]
    assert names == [
        (WA_ID, "Maria Souza"),
        ("5521998765432", "Carlos Lima"),
        (WA_ID, "Maria Souza"),
        ("5521998765432", "Carlos Lima"),
    ]


# Statuses --------------------------------------------------------------------------------


def test_a_sent_status_has_conversation_pricing_and_callback_data() -> None:
    status = only_status("status_sent")
    assert (status.wamid, status.status, status.event_id) == (OUTBOUND, "sent", f"{OUTBOUND}:sent")
    assert (status.user_id, status.recipient_id, status.bsuid) == (WA_ID, WA_ID, BSUID)
    assert status.status_at == datetime(2025, 6, 8, 21, 0, 0, tzinfo=UTC)
    assert status.conversation_id == "5f1a6e0b3c2d4e8f9a7b6c5d4e3f2a1b"
    assert status.conversation_origin == "service"
    assert status.conversation_expires_at == datetime(2025, 6, 9, 21, 0, 0, tzinfo=UTC)
    assert (status.pricing_category, status.pricing_model, status.pricing_type) == (
        "service",
        "PMP",
        "free_customer_service",
    )
    assert status.billable is False
    assert status.biz_opaque_callback_data == "order-7781"
    assert (status.phone_number_id, status.waba_id) == (PHONE_NUMBER_ID, WABA_ID)
    assert status.errors == []


def test_a_delivered_status_carries_the_username_from_its_contact() -> None:
    status = only_status("status_delivered")
    assert status.status == "delivered"
    assert status.username == "@maria.souza"
    assert status.bsuid == BSUID


def test_a_read_status_without_pricing_has_none_there() -> None:
    status = only_status("status_read")
    assert status.status == "read"
    assert (status.conversation_id, status.pricing_category, status.billable) == (None, None, None)


def test_a_failed_status_has_its_error_codes() -> None:
    status = only_status("status_failed")
    assert status.status == "failed"
    assert status.bsuid is None  # failed statuses carry no contacts
    assert [(e.code, e.title) for e in status.errors] == [(131047, "Re-engagement message")]
    assert status.errors[0].details is not None
    assert status.errors[0].details.startswith("Message failed to send because more than 24 hours")


def test_an_unknown_status_value_is_kept_verbatim() -> None:
    assert only_status("status_played").status == "played"


def test_a_status_for_a_user_without_phone_is_keyed_by_bsuid() -> None:
    status = only_status("status_bsuid_only")
    assert (status.user_id, status.recipient_id) == ("BR.90817263544536271809", None)
    assert status.parent_bsuid == "BR.ENT.506847293015824"
    assert (status.username, status.pricing_type, status.billable) == (
        "@ana.costa",
        "regular",
        True,
    )


# Several entries, changes and items ------------------------------------------------------


def test_a_batch_keeps_message_and_status_order_across_entries() -> None:
    body = load("batch_two_entries")
    sent = [m["id"] for e in body["entry"] for m in e["changes"][0]["value"]["messages"]]
    parsed = parse_webhook(body, RECEIVED_AT)
    assert [m.message_id for m in parsed.messages] == sent
    assert [m.message_id[-6:-4] for m in parsed.messages] == ["30", "31", "32", "33"]
    assert [m.text for m in parsed.messages] == ["Primeira", "Sou o Carlos", None, "Segunda loja"]
    assert [m.waba_id for m in parsed.messages] == [WABA_ID] * 3 + ["100000000000003"]
    assert parsed.messages[3].phone_number_id == "100000000000004"
    assert parsed.messages[2].media is not None
    assert parsed.messages[2].media.id == "1003383421387299"
    assert [(s.status, s.user_id) for s in parsed.statuses] == [
        ("delivered", "5521998765432"),
        ("read", "5521998765432"),
    ]
    assert parsed.unrecognized == []


# Unrecognized: kept raw, never dropped, never raised ------------------------------------


def test_an_unknown_change_field_is_kept_raw_with_its_field() -> None:
    body = load("unknown_change_field")
    parsed = parse_webhook(body, RECEIVED_AT)
    assert (parsed.messages, parsed.statuses) == ([], [])
    [unknown] = parsed.unrecognized
    assert unknown.field == "message_template_status_update"
    assert unknown.raw == body["entry"][0]["changes"][0]
    assert "message_template_status_update" in unknown.reason
    assert unknown.received_at == RECEIVED_AT


def test_a_body_for_another_object_is_kept_whole() -> None:
    body = load("non_waba_object")
    [unknown] = parse_webhook(body, RECEIVED_AT).unrecognized
    assert unknown.raw == body
    assert unknown.field is None
    assert "instagram" in unknown.reason


def test_broken_items_are_kept_one_by_one_beside_the_good_one() -> None:
    body = load("partially_malformed")
    value = body["entry"][0]["changes"][0]["value"]
    parsed = parse_webhook(body, RECEIVED_AT)
    assert [m.text for m in parsed.messages] == ["esta está boa"]
    assert parsed.statuses == []
    kept = [(u.reason, u.raw) for u in parsed.unrecognized]
    assert kept == [
        ("message has no id", value["messages"][0]),
        ("message has no from or from_user_id", value["messages"][1]),
        ("message has no valid timestamp", value["messages"][3]),
        ("status has no status", value["statuses"][0]),
        ("status has no id", value["statuses"][1]),
        ("status has no recipient_id or recipient_user_id", value["statuses"][2]),
    ]
    assert {u.field for u in parsed.unrecognized} == {"messages"}


def test_unrecognized_ids_are_the_sha256_of_the_canonical_raw_item() -> None:
    for name in ("unknown_change_field", "non_waba_object", "partially_malformed"):
        for unknown in parse(name).unrecognized:
            canonical = json.dumps(
                unknown.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            assert unknown.event_id == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_same_body_gives_the_same_unrecognized_ids_on_redelivery() -> None:
    first = [u.event_id for u in parse("partially_malformed").unrecognized]
    again = [u.event_id for u in parse("partially_malformed").unrecognized]
    assert first == again
    assert len(set(first)) == len(first)


def test_the_same_junk_twice_in_one_body_is_kept_once() -> None:
    body = load("message_text")
    junk = {"type": "text", "text": {"body": "no id, no sender"}}
    body["entry"][0]["changes"][0]["value"]["messages"] += [junk, copy.deepcopy(junk)]
    parsed = parse_webhook(body, RECEIVED_AT)
    assert len(parsed.messages) == 1
    assert [u.raw for u in parsed.unrecognized] == [junk]


def test_a_broken_change_is_kept_once_not_once_per_item() -> None:
    body = load("batch_two_entries")
    del body["entry"][0]["changes"][0]["value"]["metadata"]
    parsed = parse_webhook(body, RECEIVED_AT)
    [unknown] = parsed.unrecognized
    assert unknown.reason == "messages change has no value.metadata.phone_number_id"
    assert len(unknown.raw["value"]["messages"]) == 3
    assert [m.text for m in parsed.messages] == ["Segunda loja"]  # the other entry survives


def test_a_messages_change_with_nothing_in_it_is_kept() -> None:
    body = load("message_text")
    body["entry"][0]["changes"][0]["value"]["messages"] = []
    [unknown] = parse_webhook(body, RECEIVED_AT).unrecognized
    assert unknown.reason == "messages change has no messages, statuses or errors"


def test_change_level_errors_are_kept_with_their_phone_number() -> None:
    body = load("status_read")
    value = body["entry"][0]["changes"][0]["value"]
    value["errors"] = [{"code": 131000, "title": "Something went wrong"}]
    parsed = parse_webhook(body, RECEIVED_AT)
    assert len(parsed.statuses) == 1
    [unknown] = parsed.unrecognized
    assert unknown.reason == "change-level errors"
    assert unknown.raw == {"metadata": value["metadata"], "errors": value["errors"]}


def _deeply_nested(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]
    return nested


GARBAGE: list[Any] = [
    None,
    "string",
    "",
    42,
    3.5,
    True,
    [],
    [1, "two", None],
    {},
    {"object": None},
    {"object": "whatsapp_business_account"},
    {"object": "whatsapp_business_account", "entry": "nope"},
    {"object": "whatsapp_business_account", "entry": [None, 1, "x", [], {}, {"changes": {}}]},
    {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": 7,
                "changes": [
                    None,
                    [],
                    {"field": ["messages"]},
                    {"field": "messages"},
                    {"field": "messages", "value": []},
                    {"field": "messages", "value": {"metadata": {"phone_number_id": 5}}},
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "1"},
                            "contacts": "all of them",
                            "messages": {"id": "x"},
                            "statuses": [None, [], {"id": 1, "status": {}}],
                        },
                    },
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "1"},
                            "contacts": [None, {"wa_id": 5, "profile": "x"}],
                            "messages": [
                                {"id": "a", "from": 5511, "timestamp": "1", "type": "text"},
                                {"id": "b", "from": "1", "timestamp": True, "type": "text"},
                                {"id": "c", "from": "1", "timestamp": "9" * 5000, "type": "x"},
                                {"id": "d", "from": "1", "timestamp": 1e300, "type": "text"},
                                {
                                    "id": "e",
                                    "from": "1",
                                    "timestamp": "1",
                                    "type": "location",
                                    "location": {"latitude": "north", "longitude": 1e400},
                                },
                                {
                                    "id": "f",
                                    "from": "1",
                                    "timestamp": "1",
                                    "type": "image",
                                    "image": {"id": 1, "voice": "yes"},
                                    "errors": [None, {"code": "x"}],
                                },
                                {
                                    "id": "g",
                                    "from": "1",
                                    "timestamp": "1",
                                    "type": "interactive",
                                    "interactive": {"type": ["button_reply"]},
                                    "context": [],
                                },
                                {
                                    "id": "h",
                                    "from": "1",
                                    "timestamp": "1",
                                    "type": "reaction",
                                    "reaction": {"emoji": 1},
                                    "referral": "ad",
                                },
                                {
                                    "id": "i",
                                    "from": "1",
                                    "timestamp": "1",
                                    "type": "contacts",
                                    "contacts": [None, {"name": "x"}],
                                },
                                {"id": "j", "from": "1", "timestamp": "1", "type": "__class__"},
                            ],
                        },
                    },
                ],
            }
        ],
    },
    {"object": "whatsapp_business_account", "entry": _deeply_nested(3000)},
    _deeply_nested(3000),
]


@pytest.mark.parametrize("payload", GARBAGE, ids=[f"garbage-{i}" for i in range(len(GARBAGE))])
def test_garbage_never_raises_and_is_kept(payload: Any) -> None:
    parsed = parse_webhook(payload, RECEIVED_AT)
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        assert len(parsed.unrecognized) == 1
    for unknown in parsed.unrecognized:
        assert len(unknown.event_id) == 64


def test_junk_values_inside_a_message_read_as_absent() -> None:
    parsed = parse_webhook(GARBAGE[13], RECEIVED_AT)
    by_id = {m.message_id: m for m in parsed.messages}
    assert sorted(by_id) == ["e", "f", "g", "h", "i", "j"]
    assert by_id["e"].location is None
    assert by_id["f"].media is not None
    assert (by_id["f"].media.id, by_id["f"].media.voice) == (None, None)
    assert [e.code for e in by_id["f"].errors] == [None]
    assert (by_id["g"].reply, by_id["g"].context) == (None, None)
    assert (by_id["h"].reaction, by_id["h"].referral) == (None, None)
    assert by_id["i"].contacts == [{"name": "x"}]
    assert by_id["j"].type == "__class__"


JUNK_VALUES: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], {}, [None], {"": None}]


def _mutate(doc: Any, rng: random.Random) -> Any:
    """Replace one randomly chosen value anywhere in `doc` with junk."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(children):
            paths.append((node, key))
            if isinstance(child, dict | list):
                walk(child)

    walk(doc)
    node, key = rng.choice(paths)
    node[key] = rng.choice(JUNK_VALUES)
    return doc


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_randomly_damaged_fixtures_never_raise(fixture: str) -> None:
    rng = random.Random(fixture)
    original = load(fixture)
    for _ in range(60):
        damaged = _mutate(copy.deepcopy(original), rng)
        parsed = parse_webhook(damaged, RECEIVED_AT)
        for event in [*parsed.messages, *parsed.statuses, *parsed.unrecognized]:
            assert decode(type(event), encode(event)) == event


def test_parsing_does_not_modify_the_payload() -> None:
    for name in ALL_FIXTURES:
        body = load(name)
        parse_webhook(body, RECEIVED_AT)
        assert body == load(name)


def test_fingerprint_is_order_independent_for_objects() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint([1, 2]) != fingerprint([2, 1])


# Wire round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_every_parsed_event_survives_encode_and_decode(fixture: str) -> None:
    parsed = parse(fixture)
    events = [*parsed.messages, *parsed.statuses, *parsed.unrecognized]
    assert events
    for event in events:
        assert decode(type(event), encode(event)) == event
