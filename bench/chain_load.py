"""The chain benchmark's load and its verdict, both seen from outside the stack.

Load: cohorts of `users` users, each user sending `per_user` text messages ("#k of
<wa_id>", k = 1, 2, ...) in rounds (every user once per round, in a shuffled order),
at a fixed rate, open loop. A fraction of webhooks is delivered twice (the same body,
so the same message id, posted again a little later), as Meta does. Each body carries
Meta's `timestamp` (the second it is posted) and is signed with the app secret.

Verdict, from the replies the sandbox recorded (ENGINE=echo answers "echo: <text>"):
each message answered exactly once (missing and duplicate replies counted), per-user
order inversions (a reply to a user's later message arriving before the reply to an
earlier one), and latency from the webhook POST to the sandbox receiving the reply,
*beyond debounce*: measured from the moment the user's burst was due to close (its
last message + DEBOUNCE_QUIET_MS, or first + DEBOUNCE_MAX_MS, or at the
DEBOUNCE_MAX_MESSAGES-th message), which with a quiet time of 0 is the POST itself.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import hashlib
import hmac
import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.lean_http import LeanPool

TEXT = re.compile(r"^echo: #(\d+) of (\d+)$")
_TS_HOLE = 9_999_999_999  # replaced by the post time in each body
_TS_HOLE_BYTES = str(_TS_HOLE).encode()


@dataclass(frozen=True, slots=True)
class Message:
    wa_id: str
    k: int
    wamid: str
    body: bytes
    signature: str
    at: float  # epoch seconds it is posted (first delivery)


@dataclass
class Plan:
    messages: list[Message]
    posts: list[tuple[float, int]]  # (epoch, index in messages), redeliveries included
    users: int
    start: float

    @property
    def redelivered(self) -> int:
        return len(self.posts) - len(self.messages)


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(wa_id: str, wamid: str, text: str, timestamp: int, pnid: str) -> bytes:
    """A Cloud API `messages` webhook with one text message (Meta's shape)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": pnid},
        "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": wamid,
                "timestamp": str(timestamp),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "200000000000001", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def build_plan(
    *,
    rate: float,
    count: int,
    users: int,
    per_user: int,
    redeliver: float,
    redeliver_max_s: float,
    tag: int,
    seed: int,
    secret: str,
    phone_number_id: str,
    lead_s: float = 0.2,
) -> Plan:
    """`count` messages at `rate`, from ceil(count / (users × per_user)) cohorts of
    fresh users (tag keeps users of different rate steps apart). Fewer messages than
    one cohort means fewer users, so that each still sends `per_user` messages."""
    users = max(1, min(users, count // per_user))
    rng = random.Random(seed * 1000 + tag)
    order: list[tuple[str, int]] = []
    for cohort in range(math.ceil(count / (users * per_user))):
        ids = [f"55{tag % 100:02d}{cohort % 1000:03d}{u:06d}" for u in range(users)]
        for k in range(1, per_user + 1):
            rng.shuffle(ids)
            order.extend((wa_id, k) for wa_id in ids)
    # Bodies first with a placeholder for Meta's timestamp, so that the schedule starts
    # after the slow part (a large plan takes a second to serialise).
    drafts = []
    for wa_id, k in order[:count]:
        wamid = "wamid.BENCH" + uuid.UUID(int=rng.getrandbits(128)).hex.upper()
        body = webhook_body(wa_id, wamid, f"#{k} of {wa_id}", _TS_HOLE, phone_number_id)
        drafts.append((wa_id, k, wamid, body, rng.random() < redeliver, rng.random()))
    start = time.time() + lead_s + len(drafts) * 40e-6  # the signing pass below
    messages: list[Message] = []
    posts: list[tuple[float, int]] = []
    for i, (wa_id, k, wamid, draft, again, later) in enumerate(drafts):
        at = start + i / rate
        body = draft.replace(_TS_HOLE_BYTES, str(int(at)).encode())
        messages.append(Message(wa_id, k, wamid, body, sign(body, secret), at))
        posts.append((at, i))
        if again:
            posts.append((at + later * redeliver_max_s, i))
    posts.sort()
    return Plan(messages, posts, min(users, count), start)


@dataclass
class Sent:
    statuses: collections.Counter[int]
    max_lag_s: float
    errors: list[str] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)  # POST to the webhook's answer
    held_ms: list[float] = field(default_factory=list)  # waiting on the user's previous POST


async def drive(url: str, plan: Plan, connections: int = 256) -> Sent:
    """Post every webhook at its time (open loop: a slow server cannot slow the load),
    except that a user's next message waits until the webhook has answered the
    previous one (their phone sends one after another, and Meta's webhooks for one
    user would otherwise overtake each other in our own connection pool, which would
    show as an inversion the stack did not make). A redelivery waits for the answer to
    its first delivery, as Meta's does: posted at its own time while that first
    delivery was still held behind the user's previous message, it overtook that
    message and the ones before it (seen at 200 msgs/s on a saturated machine: a
    redelivered #8 reached the broker before #6 and #7, counted as two inversions)."""
    sent = Sent(collections.Counter(), 0.0)
    headers = {"content-type": "application/json"}
    pool, path = LeanPool.for_url(url, limit=connections, timeout_s=60)
    answered = [asyncio.Event() for _ in plan.messages]
    previous: dict[int, int] = {}
    last_of: dict[str, int] = {}
    for i, m in enumerate(plan.messages):
        if m.wa_id in last_of:
            previous[i] = last_of[m.wa_id]
        last_of[m.wa_id] = i
    first = set(range(len(plan.messages)))
    # the generator's collector pauses would be counted as the stack's latency
    gc.collect()
    gc.disable()
    try:

        async def one(i: int, redelivery: bool) -> None:
            m = plan.messages[i]
            try:
                if redelivery:
                    await answered[i].wait()
                elif i in previous and not answered[previous[i]].is_set():
                    t = time.monotonic()
                    await answered[previous[i]].wait()
                    sent.held_ms.append((time.monotonic() - t) * 1000)
                t = time.monotonic()
                status = await pool.post(
                    path, m.body, {**headers, "x-hub-signature-256": m.signature}
                )
                sent.statuses[status] += 1
                sent.answer_ms.append((time.monotonic() - t) * 1000)
            except (OSError, TimeoutError) as exc:
                sent.statuses[0] += 1
                if len(sent.errors) < 5:
                    sent.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                if not redelivery:
                    answered[i].set()

        tasks = []
        for at, i in plan.posts:
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                sent.max_lag_s = max(sent.max_lag_s, -delay)
            tasks.append(asyncio.create_task(one(i, redelivery=i not in first)))
            first.discard(i)
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
        pool.close()
    return sent


# --- verdict -------------------------------------------------------------------


def burst_due(
    plan: Plan, quiet_ms: int, max_ms: int, max_messages: int
) -> dict[tuple[str, int], float]:
    """When each message's debounce turn was due to close, from the POST times (the
    same rules as the worker's debounce, applied from outside)."""
    due: dict[tuple[str, int], float] = {}
    per_user: dict[str, list[Message]] = collections.defaultdict(list)
    for m in plan.messages:
        per_user[m.wa_id].append(m)
    quiet, cap = quiet_ms / 1000, max_ms / 1000
    for msgs in per_user.values():
        msgs.sort(key=lambda m: m.at)
        burst: list[Message] = []
        closes = 0.0
        for m in msgs:
            if burst and (m.at >= closes or quiet <= 0 or len(burst) >= max_messages):
                for b in burst:
                    due[(b.wa_id, b.k)] = closes
                burst = []
            burst.append(m)
            if quiet <= 0 or max_messages <= 1 or len(burst) >= max_messages:
                closes = m.at
            else:
                closes = min(m.at + quiet, burst[0].at + cap)
        for b in burst:
            due[(b.wa_id, b.k)] = closes
    return due


@dataclass
class Verdict:
    messages: int
    answered: int
    missing: int
    duplicates: int
    inversions: int
    users_wrong: int  # users whose reply count differs from what they sent
    inversion_examples: list[str]
    stray: int  # echo replies that match no message of this step
    beyond_ms: list[float]
    raw_ms: list[float]
    timeline: list[tuple[float, float]]  # (seconds from the first post, beyond_ms) per reply
    first_post: float
    last_reply: float | None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.inversions or self.stray)

    @property
    def throughput(self) -> float:
        if not self.last_reply or self.last_reply <= self.first_post:
            return 0.0
        return self.answered / (self.last_reply - self.first_post)


def judge(
    plan: Plan, replies: list[dict[str, Any]], quiet_ms: int, max_ms: int, max_messages: int
) -> Verdict:
    by_key = {(m.wa_id, m.k): m for m in plan.messages}
    due = burst_due(plan, quiet_ms, max_ms, max_messages)
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    per_user_replies: collections.Counter[str] = collections.Counter()
    top_k: dict[str, int] = {}
    inversions = stray = 0
    examples: list[str] = []
    beyond: list[float] = []
    raw: list[float] = []
    timeline: list[tuple[float, float]] = []
    last: float | None = None
    for r in sorted(replies, key=lambda r: r.get("seq", 0)):
        text = (r.get("body", {}).get("text") or {}).get("body", "")
        match = TEXT.match(text)
        if r.get("type") != "text" or match is None:
            continue
        key = (match.group(2), int(match.group(1)))
        if key not in by_key:
            stray += 1
            continue
        counts[key] += 1
        per_user_replies[key[0]] += 1
        if counts[key] > 1:
            continue
        if key[1] < top_k.get(key[0], 0):
            inversions += 1
            if len(examples) < 3:
                examples.append(f"user {key[0]}: #{key[1]} answered after #{top_k[key[0]]}")
        top_k[key[0]] = max(top_k.get(key[0], 0), key[1])
        received = datetime.fromisoformat(r["received_at"]).timestamp()
        last = received if last is None else max(last, received)
        raw.append((received - by_key[key].at) * 1000)
        beyond.append((received - due[key]) * 1000)
        timeline.append((by_key[key].at - plan.start, beyond[-1]))
    sent_per_user = collections.Counter(m.wa_id for m in plan.messages)
    return Verdict(
        messages=len(plan.messages),
        answered=len(counts),
        missing=len(plan.messages) - len(counts),
        duplicates=sum(c - 1 for c in counts.values()),
        inversions=inversions,
        inversion_examples=examples,
        users_wrong=sum(1 for u, n in sent_per_user.items() if per_user_replies[u] != n),
        stray=stray,
        beyond_ms=beyond,
        raw_ms=raw,
        timeline=sorted(timeline),
        first_post=plan.start,
        last_reply=last,
    )


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
