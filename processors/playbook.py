"""The default engine (ENGINE=playbook): a YAML script of greetings, a menu, FAQ answers,
opt-out/opt-in and human handoff, in Portuguese and English.

One turn gets one answer, judged on all its texts together, in this order:

    opt-in / opt-out (whole message)  ->  quiet while opted out or handed off
    -> a tapped menu item  ->  "atendente"/"human"  ->  FAQ keywords  ->  greeting
    -> "menu"  ->  FAQ by fuzzy match  ->  fallback (the 2nd in a row calls a human)

Every turn marks its last message read (typing indicator on) and asks to embed its text
messages. Greeting, menu and fallback go out as one interactive message with the menu,
not as two messages: one recipient tolerates about one message every 6 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

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
    SendText,
    validate_action,
)
from processors.engine import Decision, observe_turn
from processors.text_match import count_phrases, detect_language, fuzzy_score, has_phrase
from processors.text_match import normalize as norm
from schemas.conversation import Session, Turn
from zapstream.errors import ConfigurationError

DEFAULT_PLAYBOOK = Path(__file__).with_name("playbook.yaml")
HANDOFF_ID = "handoff"
MENU_ID = "menu"
MESSAGE_KEYS = (
    "greeting",
    "menu",
    "menu_button",
    "fallback",
    "handoff",
    "opt_out",
    "opt_in",
    "no_text",
)

Localized = dict[str, str]
Routed = tuple[str, list[Action], dict[str, Any]]
"""(intent, actions to send, session changes)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MenuItem(_Model):
    id: str
    title: Localized


class Faq(_Model):
    id: str
    keywords: list[str]
    answer: Localized


class Playbook(_Model):
    version: int = 1
    default_language: str = "pt"
    handoff_after_fallbacks: int = 2
    handoff_expires_after_h: float = 24
    """0: a handoff lasts until someone ends it."""
    fuzzy_cutoff: float = 0.84
    language_words: dict[str, list[str]]
    opt_out: list[str]
    opt_in: list[str]
    handoff: list[str]
    greeting: list[str]
    menu: list[str]
    menu_items: list[MenuItem]
    faqs: list[Faq]
    messages: dict[str, Localized]

    @model_validator(mode="after")
    def _every_text_in_every_language(self) -> Playbook:
        langs = set(self.language_words)
        if self.default_language not in langs:
            raise ValueError(f"default_language {self.default_language!r} has no language_words")
        missing = [k for k in MESSAGE_KEYS if k not in self.messages]
        texts = [(f"messages.{k}", v) for k, v in self.messages.items()]
        texts += [(f"menu_items.{m.id}", m.title) for m in self.menu_items]
        texts += [(f"faqs.{f.id}", f.answer) for f in self.faqs]
        missing += [f"{where}.{lang}" for where, text in texts for lang in langs - set(text)]
        if missing:
            raise ValueError(f"missing texts: {', '.join(sorted(missing))}")
        return self

    @property
    def languages(self) -> list[str]:
        return list(self.language_words)


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Read and check a playbook; a broken one fails here, at start-up, not mid-chat."""
    source = Path(path) if path else DEFAULT_PLAYBOOK
    try:
        doc: Any = yaml.safe_load(source.read_text(encoding="utf-8"))
        playbook = Playbook.model_validate(doc)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigurationError(f"playbook {source}: {exc}") from exc
    engine = PlaybookEngine(playbook)
    try:
        for lang in playbook.languages:  # every menu must be sendable as built
            validate_action(engine.menu_action(lang, "greeting"))
    except InvalidAction as exc:
        raise ConfigurationError(f"playbook {source}: menu: {exc}") from exc
    return playbook


class PlaybookEngine:
    """Pure: `decide` reads nothing but its arguments and the playbook."""

    name = "playbook"

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook

    @cached_property
    def _lists(self) -> dict[str, list[str]]:
        pb = self.playbook
        lists = {
            "opt_out": pb.opt_out,
            "opt_in": pb.opt_in,
            "handoff": pb.handoff,
            "greeting": pb.greeting,
            "menu": pb.menu,
        }
        return {name: [norm(p) for p in phrases] for name, phrases in lists.items()}

    @cached_property
    def _faq_keywords(self) -> list[tuple[str, list[str]]]:
        return [(f.id, [norm(k) for k in f.keywords]) for f in self.playbook.faqs]

    @cached_property
    def _language_words(self) -> dict[str, set[str]]:
        return {lang: {norm(w) for w in ws} for lang, ws in self.playbook.language_words.items()}

    def text(self, key: str, lang: str) -> str:
        return self.playbook.messages[key][lang]

    def menu_action(self, lang: str, message_key: str) -> SendButtons | SendList:
        items = self.playbook.menu_items
        body = self.text(message_key, lang)
        if len(items) <= 3:
            return SendButtons(body=body, buttons=tuple((m.id, m.title[lang]) for m in items))
        rows = tuple(ListRow(id=m.id, title=m.title[lang]) for m in items)
        section = ListSection(rows=rows)
        return SendList(body=body, button=self.text("menu_button", lang), sections=(section,))

    def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision:
        before = observe_turn(session, turn, now)
        texts = turn.texts
        joined = norm(" ".join(texts))
        default = self.playbook.default_language
        lang = detect_language(
            joined, self._language_words, current=before.language, default=default
        )
        before = self._expire_handoff(before, now).updated(language=lang)
        each = [norm(t) for t in texts]
        intent, sends, changes = self._route(before, turn, each, joined, lang, now)
        after = before.updated(last_intent=intent, **changes)
        return Decision(after, (*self._housekeeping(turn, lang), *sends), intent)

    def _expire_handoff(self, session: Session, now: datetime) -> Session:
        hours = self.playbook.handoff_expires_after_h
        since = session.handoff_since
        if session.handoff_active and hours > 0 and since and now - since >= timedelta(hours=hours):
            return session.updated(handoff_active=False, handoff_since=None)
        return session

    def _housekeeping(self, turn: Turn, lang: str) -> list[Action]:
        actions: list[Action] = []
        # Reactions are not messages one can mark read; mark the newest real one.
        readable = [m for m in turn.messages if m.type != "reaction"]
        if readable:
            actions.append(MarkRead(message_id=readable[-1].message_id, typing_indicator=True))
        actions += [
            EmbedText(message_id=m.message_id, text=m.text, language=lang)
            for m in turn.messages
            if m.type == "text" and m.text
        ]
        return actions

    def _route(
        self, s: Session, turn: Turn, each: Sequence[str], joined: str, lang: str, now: datetime
    ) -> Routed:
        """(intent, sends, session changes) for one turn."""
        lists = self._lists
        if s.opted_out:
            if any(t in lists["opt_in"] for t in each):
                return "opt_in", [self.menu_action(lang, "opt_in")], {"opted_out": False}
            return "opted_out", [], {}  # silence: they asked us to stop
        if any(t in lists["opt_out"] for t in each):
            changes = {"opted_out": True, "handoff_active": False, "handoff_since": None}
            return "opt_out", [SendText(body=self.text("opt_out", lang))], changes
        if s.handoff_active:
            return "handoff_active", [], {}  # a human has the conversation
        if all(m.type == "reaction" for m in turn.messages):
            return "reaction", [], {}  # a 👍 needs no answer
        reset = {"consecutive_fallbacks": 0}
        choice = next((m.reply.id for m in reversed(turn.messages) if m.reply and m.reply.id), None)
        answers = {f.id: f.answer[lang] for f in self.playbook.faqs}
        if choice in answers:
            return choice, [SendText(body=answers[choice])], reset
        if choice == HANDOFF_ID or count_phrases(joined, lists["handoff"]):
            return self._handoff("asked", lang, now)
        if choice == MENU_ID:
            return "menu", [self.menu_action(lang, "menu")], reset
        # Most keywords found wins; on a tie, the FAQ written first in the playbook.
        hits = [(count_phrases(joined, kws), faq_id) for faq_id, kws in self._faq_keywords]
        best_hits, faq_id = max(hits, key=lambda h: h[0], default=(0, ""))
        if best_hits:
            return faq_id, [SendText(body=answers[faq_id])], reset
        if any(has_phrase(joined, p) for p in lists["greeting"]):
            return "greeting", [self.menu_action(lang, "greeting")], reset
        if any(has_phrase(joined, p) for p in lists["menu"]):
            return "menu", [self.menu_action(lang, "menu")], reset
        cutoff = self.playbook.fuzzy_cutoff
        fuzzy = [(fuzzy_score(joined, kws, cutoff), faq_id) for faq_id, kws in self._faq_keywords]
        score, faq_id = max(fuzzy, key=lambda f: f[0], default=(0.0, ""))
        if score > 0:  # fuzzy_score is 0.0 below the cutoff
            return faq_id, [SendText(body=answers[faq_id])], reset
        if not turn.texts:
            return "no_text", [self.menu_action(lang, "no_text")], {}
        misses = s.consecutive_fallbacks + 1
        if misses >= self.playbook.handoff_after_fallbacks:
            return self._handoff(f"{misses} fallbacks in a row", lang, now)
        return "fallback", [self.menu_action(lang, "fallback")], {"consecutive_fallbacks": misses}

    def _handoff(self, reason: str, lang: str, now: datetime) -> Routed:
        changes = {"handoff_active": True, "handoff_since": now, "consecutive_fallbacks": 0}
        message = SendText(body=self.text("handoff", lang))
        return "handoff", [message, RequestHandoff(reason=reason)], changes


def create_engine(playbook_path: str | Path | None = None) -> PlaybookEngine:
    """The ENGINE=playbook factory (PLAYBOOK_PATH; unset: the built-in playbook.yaml)."""
    return PlaybookEngine(load_playbook(playbook_path))
