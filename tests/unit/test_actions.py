"""Actions: Graph API message fields, and WhatsApp limits refused with a typed error."""

from __future__ import annotations

import pytest

from processors.actions import (
    Action,
    EmbedText,
    InvalidAction,
    ListRow,
    ListSection,
    MarkRead,
    RequestHandoff,
    SendButtons,
    SendList,
    SendMedia,
    SendTemplate,
    SendText,
    action_from_dict,
    action_to_dict,
    outbound_payload,
    validate_action,
)
from schemas.outbound import outbound_id_for
from zapstream.errors import InvalidPayload, PermanentError


def test_text_payload_has_body_and_preview_flag():
    kind, payload = outbound_payload(SendText(body="olá", preview_url=True))
    assert kind == "text"
    assert payload == {"type": "text", "text": {"body": "olá", "preview_url": True}}


def test_reply_to_becomes_the_graph_context():
    _, payload = outbound_payload(SendText(body="echo: oi", reply_to="wamid.1"))
    assert payload["context"] == {"message_id": "wamid.1"}


def test_buttons_payload_matches_the_graph_shape():
    action = SendButtons(body="Escolha", buttons=(("a", "Um"), ("b", "Dois")), footer="rodapé")
    kind, payload = outbound_payload(action)
    assert kind == "interactive"
    assert payload["interactive"] == {
        "type": "button",
        "body": {"text": "Escolha"},
        "footer": {"text": "rodapé"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "a", "title": "Um"}},
                {"type": "reply", "reply": {"id": "b", "title": "Dois"}},
            ]
        },
    }


def test_list_payload_matches_the_graph_shape():
    rows = (ListRow(id="r1", title="Horários", description="quando abrimos"),)
    action = SendList(body="Menu", button="Opções", sections=(ListSection(rows=rows),))
    kind, payload = outbound_payload(action)
    assert kind == "interactive"
    assert payload["interactive"]["type"] == "list"
    assert payload["interactive"]["action"] == {
        "button": "Opções",
        "sections": [
            {"rows": [{"id": "r1", "title": "Horários", "description": "quando abrimos"}]}
        ],
    }


def test_template_payload_carries_the_language_code_and_components():
    components = ({"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},)
    kind, payload = outbound_payload(
        SendTemplate(name="reengage", language="pt_BR", components=components)
    )
    assert kind == "template"
    assert payload["template"] == {
        "name": "reengage",
        "language": {"code": "pt_BR"},
        "components": list(components),
    }


def test_media_payload_uses_a_link_or_an_id():
    kind, payload = outbound_payload(SendMedia(kind="image", link="https://x/a.png", caption="a"))
    assert (kind, payload["image"]) == ("image", {"link": "https://x/a.png", "caption": "a"})
    kind, payload = outbound_payload(SendMedia(kind="document", media_id="9", filename="a.pdf"))
    assert (kind, payload["document"]) == ("document", {"id": "9", "filename": "a.pdf"})


def test_mark_read_turns_the_typing_indicator_on():
    assert outbound_payload(MarkRead(message_id="wamid.1")) == (
        "read",
        {"status": "read", "message_id": "wamid.1", "typing_indicator": {"type": "text"}},
    )
    _, plain = outbound_payload(MarkRead(message_id="wamid.1", typing_indicator=False))
    assert "typing_indicator" not in plain


@pytest.mark.parametrize(
    "action",
    [
        SendText(body=""),
        SendText(body="x" * 4097),
        SendButtons(body="x" * 1025, buttons=(("a", "A"),)),
        SendButtons(body="ok", buttons=(("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"))),
        SendButtons(body="ok", buttons=(("a", "x" * 21),)),
        SendButtons(body="ok", buttons=(("a", "Same"), ("b", "Same"))),
        SendButtons(body="ok", buttons=()),
        SendList(
            body="ok",
            button="Ver",
            sections=(ListSection(rows=tuple(ListRow(id=str(i), title="t") for i in range(11))),),
        ),
        SendList(
            body="ok", button="x" * 21, sections=(ListSection(rows=(ListRow(id="1", title="t"),)),)
        ),
        SendMedia(kind="image"),
        SendMedia(kind="image", link="https://x", media_id="1"),
        SendMedia(kind="audio", media_id="1", caption="no captions on audio"),
        SendTemplate(name=""),
    ],
    ids=lambda a: a.action,
)
def test_actions_over_whatsapp_limits_are_refused(action):
    with pytest.raises(InvalidAction):
        outbound_payload(action)


def test_a_refused_action_is_a_permanent_invalid_payload_that_names_the_field():
    with pytest.raises(InvalidAction) as caught:
        validate_action(SendButtons(body="ok", buttons=(("a", "A title that is far too long"),)))
    assert isinstance(caught.value, InvalidPayload)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.retryable is False
    assert "limit 20" in str(caught.value)


def test_a_list_with_two_sections_needs_section_titles():
    one, two = (
        ListSection(rows=(ListRow(id="1", title="t"),)),
        ListSection(rows=(ListRow(id="2", title="u"),)),
    )
    with pytest.raises(InvalidAction, match="section title"):
        validate_action(SendList(body="b", button="Ver", sections=(one, two)))


def test_internal_actions_are_not_graph_messages():
    with pytest.raises(InvalidAction):
        outbound_payload(RequestHandoff(reason="asked"))
    with pytest.raises(InvalidAction):
        outbound_payload(EmbedText(message_id="m", text="oi"))


def test_every_action_round_trips_through_a_dict():
    actions: list[Action] = [
        SendText(body="oi", reply_to="m1"),
        SendButtons(body="b", buttons=(("a", "A"),)),
        SendList(
            body="b", button="Ver", sections=(ListSection(rows=(ListRow(id="1", title="t"),)),)
        ),
        SendTemplate(name="t", components=({"type": "body"},)),
        SendMedia(kind="video", media_id="5"),
        MarkRead(message_id="m"),
        RequestHandoff(reason="asked"),
        EmbedText(message_id="m", text="oi", language="pt"),
    ]
    for action in actions:
        assert action_from_dict(action_to_dict(action)) == action


def test_a_dict_that_is_no_action_is_refused_with_a_typed_error():
    with pytest.raises(InvalidAction):
        action_from_dict({"action": "send_fax", "body": "x"})


def test_outbound_ids_are_stable_per_turn_and_position():
    assert (
        outbound_id_for("turn-abc", 1)
        == outbound_id_for("turn-abc", 1)
        != outbound_id_for("turn-abc", 2)
    )
