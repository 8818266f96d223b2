"""Human handoff end to end, on each broker, the stack started as `make run` does, the
sandbox as the Graph API and a helpdesk receiver started here:

"quero falar com um atendente" → one signed notification; the bot goes silent; the
agent's reply (sent twice with one Idempotency-Key) reaches the sandbox once; release →
the bot answers again; a helpdesk that answers 500 → retries, then a dead letter with
its reason; a handoff left open is notified once more."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from processors.handoff.notify import signature_valid
from tests.support.helpdesk import Helpdesk
from tests.support.prom import scrape, total
from tests.support.stack import Sandbox, Stack, new_user

pytestmark = pytest.mark.e2e

ADMIN = "e2e-admin-token"
SECRET = "e2e-helpdesk-secret"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
RENOTIFY_S = 6
ATTEMPTS = 3


@pytest.fixture(scope="module")
def helpdesk() -> Iterator[Helpdesk]:
    desk = Helpdesk().start()
    yield desk
    desk.stop()


@pytest.fixture(scope="module")
def stack(
    broker_kind: str, helpdesk: Helpdesk, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"handoff-{broker_kind}"),
        broker=broker_kind,
        DEBOUNCE_QUIET_MS="0",
        ADMIN_TOKEN=ADMIN,
        HELPDESK_WEBHOOK_URL=helpdesk.url,
        HELPDESK_SECRET=SECRET,
        HANDOFF_RENOTIFY_S=str(RENOTIFY_S),
        HANDOFF_NOTIFY_MAX_ATTEMPTS=str(ATTEMPTS),
        HANDOFF_NOTIFY_BACKOFF_BASE_S="0.1",
        HANDOFF_NOTIFY_BACKOFF_CAP_S="0.3",
    ).start()
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture
def sandbox(stack: Stack) -> Sandbox:
    return Sandbox(stack)


def api(stack: Stack, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {**AUTH, **kw.pop("headers", {})}
    return httpx.request(method, f"{stack.url}{path}", headers=headers, timeout=30, **kw)


def sends(sandbox: Sandbox, user: str) -> list[dict[str, Any]]:
    return sandbox.messages(user)


def wait_until(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    return check()


def test_a_handoff_notifies_once_silences_the_bot_relays_the_agent_and_ends_on_release(
    stack: Stack, sandbox: Sandbox, helpdesk: Helpdesk
) -> None:
    user = new_user()
    assert stack.post_text("quero falar com um atendente", wa_id=user).status_code == 200
    [post] = helpdesk.wait_for(user, "handoff.opened")
    assert signature_valid(SECRET, post.body, post.headers["x-zapstream-signature"])
    assert post.headers["x-zapstream-delivery"] == post.doc["delivery_id"]
    assert post.doc["reason"] == "asked"
    assert post.doc["source"] == "engine"
    assert post.doc["text"] == "quero falar com um atendente"
    handoff_id = post.doc["handoff_id"]
    announced = sandbox.wait_for(user, 1)  # the playbook says a human will answer
    assert len(announced) == 1

    # silent: the next message is recorded and decided, and gets no answer
    assert stack.post_text("oi? tem alguém aí?", wa_id=user).status_code == 200
    decided = stack.wait_for_rows(
        f"SELECT dropped FROM turns WHERE user_id = '{user}' AND intent = 'handoff_active'", 1, 60
    )
    assert "handoff_active" in decided[0][0]
    # the sink loads each topic as it comes: the turn may land before its message
    recorded = stack.wait_for_rows(f"SELECT 1 FROM messages WHERE user_id = '{user}'", 2, 60)
    assert len(recorded) == 2
    sandbox.settle()
    assert len(sends(sandbox, user)) == 1

    # the open handoff is listed; the agent replies twice with one key: sent once
    listed = wait_until(
        lambda: [
            h for h in api(stack, "GET", "/handoffs").json()["handoffs"] if h["user_id"] == user
        ]
    )
    assert [h["handoff_id"] for h in listed] == [handoff_id]
    key = {"Idempotency-Key": f"reply-{user}-1"}
    first = api(
        stack, "POST", f"/handoffs/{user}/reply", json={"text": "Olá! Sou a Ana."}, headers=key
    )
    again = api(
        stack, "POST", f"/handoffs/{user}/reply", json={"text": "Olá! Sou a Ana."}, headers=key
    )
    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["outbound_id"] == again.json()["outbound_id"]
    assert wait_until(lambda: "Olá! Sou a Ana." in sandbox.texts(user))
    sandbox.settle()
    assert sandbox.texts(user).count("Olá! Sou a Ana.") == 1

    # release: the bot answers the next message again
    assert api(stack, "POST", f"/handoffs/{user}/release").status_code == 202
    released = stack.wait_for_rows(
        f"SELECT outcome FROM handoffs WHERE handoff_id = '{handoff_id}' AND outcome = 'released'",
        1,
        60,
    )
    assert released == [("released",)]
    before = len(sends(sandbox, user))
    assert stack.post_text("oi", wa_id=user).status_code == 200
    assert wait_until(lambda: len(sends(sandbox, user)) > before)

    [row] = stack.query(
        "SELECT source, reason, opened_at IS NOT NULL, notified_at IS NOT NULL, "
        "first_agent_reply_at IS NOT NULL, released_at IS NOT NULL "
        f"FROM handoffs WHERE handoff_id = '{handoff_id}'"
    )
    assert row == ("engine", "asked", True, True, True, True)
    assert len(helpdesk.posts_for(user, "handoff.opened")) == 1  # one notification, ever


def test_a_helpdesk_that_keeps_failing_is_retried_then_dead_lettered_with_its_reason(
    stack: Stack, helpdesk: Helpdesk
) -> None:
    user = new_user()
    helpdesk.failing_users.add(user)
    assert stack.post_text("quero falar com um atendente", wa_id=user).status_code == 200
    posts = helpdesk.wait_for(user, "handoff.opened", ATTEMPTS)
    assert len(posts) == ATTEMPTS
    assert {p.headers["x-zapstream-delivery"] for p in posts} == {posts[0].doc["delivery_id"]}
    rows = stack.wait_for_rows(
        f"SELECT stage, reason, retryable FROM processing_dead_letters WHERE user_id = '{user}'",
        1,
        60,
    )
    assert rows == [("notify", f"opened: helpdesk answered 500 after {ATTEMPTS} attempt(s)", True)]
    outcome = stack.wait_for_rows(
        f"SELECT outcome FROM handoffs WHERE user_id = '{user}' AND outcome = 'notify_failed'",
        1,
        60,
    )
    assert outcome == [("notify_failed",)]
    time.sleep(RENOTIFY_S + 4)  # past the renotify time: a failed handoff is not posted again
    assert len(helpdesk.posts_for(user)) == ATTEMPTS


def test_an_agent_opened_handoff_left_open_is_notified_exactly_once_more(
    stack: Stack, sandbox: Sandbox, helpdesk: Helpdesk
) -> None:
    user = new_user()
    assert stack.post_text("olá", wa_id=user).status_code == 200
    assert sandbox.wait_for(user, 1, kind="interactive")  # the greeting menu
    stack.wait_for_rows(f"SELECT 1 FROM messages WHERE user_id = '{user}'", 1, 60)
    opened = api(stack, "POST", "/handoffs", json={"user_id": user, "reason": "vip customer"})
    assert opened.status_code == 202, opened.text
    [post] = helpdesk.wait_for(user, "handoff.opened")
    assert (post.doc["source"], post.doc["reason"]) == ("agent", "vip customer")
    metrics = f"{stack.worker_urls()[0]}/metrics"
    assert wait_until(lambda: total(scrape(metrics), "zapstream_handoffs_open") >= 1)
    [again] = helpdesk.wait_for(user, "handoff.renotify", timeout=RENOTIFY_S + 60)
    assert again.doc["handoff_id"] == post.doc["handoff_id"]
    assert signature_valid(SECRET, again.body, again.headers["x-zapstream-signature"])
    time.sleep(RENOTIFY_S + 4)  # past another renotify period: no third post
    assert len(helpdesk.posts_for(user)) == 2
    [row] = stack.wait_for_rows(
        f"SELECT renotified_at IS NOT NULL FROM handoffs WHERE user_id = '{user}' AND renotified_at IS NOT NULL",
        1,
        60,
    )
    assert row == (True,)


def test_a_worker_killed_mid_post_posts_again_with_the_same_delivery_id_and_then_never(
    stack: Stack, helpdesk: Helpdesk
) -> None:
    """Last in this module: it kills the worker (the supervisor restarts it)."""
    user = new_user()
    answer = threading.Event()
    helpdesk.held_users[user] = answer
    assert stack.post_text("quero falar com um atendente", wa_id=user).status_code == 200
    [first] = helpdesk.wait_for(user, "handoff.opened")  # held: no answer yet
    os.kill(stack.child_pids()["worker"], signal.SIGKILL)
    answer.set()  # the dead worker never reads this answer
    posts = helpdesk.wait_for(user, "handoff.opened", 2, timeout=120)
    assert len(posts) == 2, stack.output()
    stack.wait_for_rows(
        f"SELECT 1 FROM handoffs WHERE user_id = '{user}' AND notified_at IS NOT NULL", 1, 60
    )
    time.sleep(5)  # the notified ledger entry is stored: no third opened post comes
    posts = helpdesk.posts_for(user, "handoff.opened")
    assert len(posts) == 2
    assert len(helpdesk.posts_for(user, "handoff.renotify")) <= 1  # may be due by now
    assert {p.headers["x-zapstream-delivery"] for p in posts} == {first.doc["delivery_id"]}
    assert {p.body for p in posts} == {first.body}  # the same bytes: a receiver can dedupe
