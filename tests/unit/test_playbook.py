"""The default engine: its intents in Portuguese and English, handoff, opt-out, language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from processors.actions import (
    EmbedText,
    MarkRead,
    RequestHandoff,
    SendButtons,
    SendList,
    SendText,
)
from processors.debounce import DebounceConfig, Pending, close, run
from processors.engine import Decision
from processors.playbook import DEFAULT_PLAYBOOK, PlaybookEngine, create_engine, load_playbook
from schemas.conversation import Session, Turn
from schemas.events import InteractiveReply, MessageReceived
from zapstream.errors import ConfigurationError

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
USER = "5511900000001"
ENGINE = create_engine()


def msg(
    mid: str, text: str | None, *, at: float = 0, type_: str = "text", reply_id: str | None = None
):
    reply = InteractiveReply(kind="button_reply", id=reply_id, title=text) if reply_id else None
    return MessageReceived(
        message_id=mid,
        user_id=USER,
        wa_id=USER,
        phone_number_id="100",
        type="interactive" if reply_id else type_,
        sent_at=T0 + timedelta(seconds=at),
        received_at=T0 + timedelta(seconds=at),
        text=text,
        reply=reply,
        raw={},
    )


def turn(*messages: MessageReceived) -> Turn:
    last = messages[-1].received_at
    return close(Pending(user_id=USER, messages=messages, first_at=T0, last_at=last), last, "quiet")


def say(session: Session | None, *texts: str, at: float = 0) -> Decision:
    """One turn of `texts` from the user, decided `at` seconds after T0."""
    msgs = [msg(f"m{at}-{i}", t, at=at) for i, t in enumerate(texts)]
    return ENGINE.decide(session, turn(*msgs), T0 + timedelta(seconds=at + 2))


def sends(decision: Decision) -> list[object]:
    return [a for a in decision.actions if not isinstance(a, MarkRead | EmbedText)]


def body(decision: Decision) -> str:
    (first, *_) = sends(decision)
    assert isinstance(first, SendText | SendButtons | SendList)
    return first.body


@pytest.mark.parametrize("text", ["oi", "Olá!", "bom dia", "Boa noite 😀"])
def test_portuguese_greeting_gets_a_greeting_with_menu_buttons(text):
    d = say(None, text)
    assert d.intent == "greeting"
    (menu,) = sends(d)
    assert isinstance(menu, SendButtons)
    assert menu.body.startswith("Olá!")
    assert [b[0] for b in menu.buttons] == ["faq_hours", "faq_prices", "handoff"]
    assert d.session.language == "pt"


@pytest.mark.parametrize("text", ["hello", "Hi there", "good morning"])
def test_english_greeting_is_answered_in_english(text):
    d = say(None, text)
    assert (d.intent, d.session.language) == ("greeting", "en")
    assert body(d).startswith("Hi!")


def test_a_tapped_menu_button_routes_to_its_answer():
    d = ENGINE.decide(None, turn(msg("m1", "Horários", reply_id="faq_hours")), T0)
    assert d.intent == "faq_hours"
    assert "segunda a sexta" in body(d)


def test_the_handoff_button_calls_a_human():
    d = ENGINE.decide(None, turn(msg("m1", "Falar com atendente", reply_id="handoff")), T0)
    assert d.intent == "handoff"
    assert any(isinstance(a, RequestHandoff) for a in d.actions)


@pytest.mark.parametrize(
    ("text", "intent", "snippet"),
    [
        ("qual o horário de funcionamento?", "faq_hours", "segunda a sexta"),
        ("quanto custa?", "faq_prices", "R$ 49,90"),
        ("vocês aceitam pix?", "faq_payment", "Pix"),
        ("what are your opening hours?", "faq_hours", "Monday to Friday"),
        ("how much does it cost?", "faq_prices", "R$ 49.90"),
        ("do you do delivery", "faq_delivery", "business days"),
    ],
)
def test_faq_answers_by_keyword_in_both_languages(text, intent, snippet):
    d = say(None, text)
    assert d.intent == intent
    assert snippet in body(d)


def test_faq_matches_typos_and_missing_accents():
    assert say(None, "HORARIO").intent == "faq_hours"
    assert say(None, "qual o horaroi").intent == "faq_hours"
    assert say(None, "pagamneto").intent == "faq_payment"


def test_a_greeting_with_a_question_answers_the_question():
    assert say(None, "oi, qual o preço?").intent == "faq_prices"


@pytest.mark.parametrize("text", ["quero falar com um atendente", "Human please", "AGENT"])
def test_asking_for_a_human_requests_a_handoff(text):
    d = say(None, text)
    assert d.intent == "handoff"
    assert isinstance(sends(d)[0], SendText)
    assert any(isinstance(a, RequestHandoff) for a in d.actions)
    assert d.session.handoff_active is True


def test_two_fallbacks_in_a_row_request_a_human():
    first = say(None, "xyzzy plugh")
    assert (first.intent, first.session.consecutive_fallbacks) == ("fallback", 1)
    assert isinstance(sends(first)[0], SendButtons)  # the apology carries the menu
    second = say(first.session, "blorp", at=60)
    assert second.intent == "handoff"
    assert RequestHandoff(reason="2 fallbacks in a row") in second.actions
    assert second.session.consecutive_fallbacks == 0


def test_an_understood_turn_resets_the_fallback_count():
    first = say(None, "xyzzy")
    understood = say(first.session, "qual o horário?", at=60)
    again = say(understood.session, "blorp", at=120)
    assert again.intent == "fallback"


def test_while_a_human_has_the_conversation_the_bot_only_marks_read():
    handed = say(None, "atendente")
    d = say(handed.session, "oi, alguém aí?", at=60)
    assert d.intent == "handoff_active"
    assert sends(d) == []
    assert any(isinstance(a, MarkRead) for a in d.actions)


def test_a_forgotten_handoff_expires_and_the_bot_answers_again():
    handed = say(None, "atendente")
    d = say(handed.session, "oi", at=25 * 3600)
    assert d.intent == "greeting"
    assert d.session.handoff_active is False


@pytest.mark.parametrize(("word", "lang"), [("parar", "pt"), ("STOP", "en"), ("Sair.", "pt")])
def test_opt_out_confirms_and_sets_opted_out(word, lang):
    d = say(None, word)
    assert d.intent == "opt_out"
    assert d.session.opted_out is True
    (confirm,) = sends(d)
    assert isinstance(confirm, SendText)
    assert ("VOLTAR" if lang == "pt" else "START") in confirm.body


def test_an_opted_out_user_gets_no_reply():
    out = say(None, "parar")
    for text in ("oi", "atendente", "qual o horário?", "parar"):
        d = say(out.session, text, at=60)
        assert (d.intent, sends(d)) == ("opted_out", [])


def test_opting_back_in_resumes_the_conversation():
    out = say(None, "parar")
    back = say(out.session, "voltar", at=60)
    assert back.intent == "opt_in"
    assert back.session.opted_out is False
    assert sends(back)
    assert say(back.session, "oi", at=120).intent == "greeting"


def test_stop_inside_a_sentence_does_not_unsubscribe():
    d = say(None, "I can't stop asking about your prices")
    assert d.session.opted_out is False
    assert d.intent == "faq_prices"


def test_every_turn_marks_its_last_message_read_with_typing_on():
    d = say(None, "oi", "tudo bem?", "qual o horário?")
    assert d.actions[0] == MarkRead(message_id="m0-2", typing_indicator=True)


def test_text_messages_are_embedded_with_their_language():
    d = say(None, "oi", "qual o horário?")
    embeds = [a for a in d.actions if isinstance(a, EmbedText)]
    assert [(e.message_id, e.text, e.language) for e in embeds] == [
        ("m0-0", "oi", "pt"),
        ("m0-1", "qual o horário?", "pt"),
    ]


def test_burst_of_five_messages_gets_one_reply():
    texts = ["oi", "tudo bem?", "queria saber", "o horário", "de vocês"]
    events = [
        (T0 + timedelta(seconds=i * 0.4), msg(f"m{i}", t, at=i * 0.4)) for i, t in enumerate(texts)
    ]
    (only,) = run(events, DebounceConfig())
    d = ENGINE.decide(None, only, only.closed_at)
    assert d.intent == "faq_hours"
    assert len(sends(d)) == 1


def test_the_session_remembers_the_language():
    first = say(None, "hello, what are your hours?")
    d = say(first.session, "ok 👍", at=60)
    assert d.session.language == "en"
    assert body(d).startswith("Sorry")


def test_media_without_text_gets_the_text_only_notice_and_counts_no_fallback():
    photo = msg("m1", None, type_="image")
    d = ENGINE.decide(None, turn(photo), T0)
    assert d.intent == "no_text"
    assert d.session.consecutive_fallbacks == 0
    assert d.actions[0] == MarkRead(message_id="m1")


def test_a_reaction_alone_gets_no_reply():
    d = ENGINE.decide(None, turn(msg("m1", "👍", type_="reaction")), T0)
    assert (d.intent, d.actions) == ("reaction", ())


def test_decide_is_pure_and_counts_the_turn():
    t = turn(msg("m1", "oi"))
    assert ENGINE.decide(None, t, T0) == ENGINE.decide(None, t, T0)
    s = ENGINE.decide(None, t, T0).session
    assert (s.turn_count, s.last_turn_id, s.last_intent, s.last_inbound_at) == (
        1,
        t.turn_id,
        "greeting",
        T0,
    )


def test_more_than_three_menu_items_go_out_as_a_list(tmp_path: Path):
    doc = yaml.safe_load(DEFAULT_PLAYBOOK.read_text(encoding="utf-8"))
    doc["menu_items"].append({"id": "faq_address", "title": {"pt": "Endereço", "en": "Address"}})
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    d = PlaybookEngine(load_playbook(path)).decide(None, turn(msg("m1", "oi")), T0)
    (menu,) = sends(d)
    assert isinstance(menu, SendList)
    assert len(menu.sections[0].rows) == 4


@pytest.mark.parametrize(
    "breakage",
    [
        lambda doc: doc["messages"]["greeting"].pop("en"),
        lambda doc: doc["menu_items"][0]["title"].update(pt="Um título longo demais para botão"),
        lambda doc: doc.update(default_language="fr"),
        lambda doc: doc.pop("faqs"),
    ],
)
def test_a_broken_playbook_fails_at_load(tmp_path: Path, breakage):
    doc = yaml.safe_load(DEFAULT_PLAYBOOK.read_text(encoding="utf-8"))
    breakage(doc)
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigurationError):
        load_playbook(path)


@pytest.mark.parametrize(
    "text", ["oi", "hello", "menu", "xyzzy", "qual o horário?", "atendente", "parar", "voltar"]
)
def test_every_playbook_reply_is_a_valid_graph_message(text):
    from processors.actions import outbound_payload

    for action in say(None, text).actions:
        if not isinstance(action, EmbedText | RequestHandoff):
            outbound_payload(action)  # raises InvalidAction on any WhatsApp limit
