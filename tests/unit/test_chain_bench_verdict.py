"""The chain benchmark's load plan and verdict (bench/chain_load.py): pure, no stack."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.chain_load import Message, Plan, build_plan, burst_due, judge


def _plan(times: dict[tuple[str, int], float]) -> Plan:
    msgs = [Message(u, k, f"wamid.{u}.{k}", b"", "", at) for (u, k), at in times.items()]
    return Plan(msgs, [(m.at, i) for i, m in enumerate(msgs)], 1, min(times.values()))


def _reply(seq: int, wa_id: str, k: int, at: float) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": "text",
        "to": wa_id,
        "body": {"text": {"body": f"echo: #{k} of {wa_id}"}},
        "received_at": datetime.fromtimestamp(at, UTC).isoformat(),
    }


def test_plan_has_every_user_send_per_user_messages_in_order_with_redeliveries() -> None:
    plan = build_plan(
        rate=100, count=60, users=6, per_user=10, redeliver=0.5, redeliver_max_s=1.0,
        tag=1, seed=3, secret="s", phone_number_id="1",
    )  # fmt: skip
    assert len(plan.messages) == 60
    assert len({m.wa_id for m in plan.messages}) == 6
    for wa_id in {m.wa_id for m in plan.messages}:
        ks = [m.k for m in plan.messages if m.wa_id == wa_id]
        assert ks == list(range(1, 11))
    assert 10 < plan.redelivered < 50
    assert [at for at, _ in plan.posts] == sorted(at for at, _ in plan.posts)


def test_more_messages_than_one_cohort_brings_fresh_users() -> None:
    plan = build_plan(
        rate=100, count=50, users=5, per_user=5, redeliver=0, redeliver_max_s=0, tag=1,
        seed=1, secret="s", phone_number_id="1",
    )  # fmt: skip
    assert len({m.wa_id for m in plan.messages}) == 10


def test_without_quiet_time_each_message_is_due_when_posted() -> None:
    plan = _plan({("u", 1): 10.0, ("u", 2): 10.1})
    assert burst_due(plan, 0, 5000, 10) == {("u", 1): 10.0, ("u", 2): 10.1}


def test_a_burst_is_due_one_quiet_time_after_its_last_message() -> None:
    plan = _plan({("u", 1): 10.0, ("u", 2): 11.0, ("u", 3): 13.0})
    due = burst_due(plan, 1500, 5000, 10)
    assert due[("u", 1)] == due[("u", 2)] == 12.5
    assert due[("u", 3)] == 14.5


def test_a_long_burst_is_cut_at_max_ms_and_at_max_messages() -> None:
    plan = _plan({("u", k): 10.0 + k for k in range(1, 8)})
    due = burst_due(plan, 1500, 3000, 10)
    assert due[("u", 1)] == due[("u", 3)] == 14.0  # first + 3 s
    assert due[("u", 4)] == 17.0
    plan = _plan({("u", k): 10.0 + k / 10 for k in range(1, 5)})
    due = burst_due(plan, 1500, 5000, 2)
    assert due[("u", 1)] == due[("u", 2)] == 10.2


def test_verdict_counts_missing_duplicates_and_inversions() -> None:
    plan = _plan({("551", 1): 1.0, ("551", 2): 2.0, ("551", 3): 3.0, ("552", 1): 1.5})
    replies = [
        _reply(1, "551", 2, 2.1),
        _reply(2, "551", 1, 2.2),  # after #2: an inversion
        _reply(3, "551", 1, 2.3),  # a duplicate
        _reply(4, "552", 1, 1.6),
        _reply(5, "553", 1, 1.7),  # nobody sent this
    ]
    v = judge(plan, replies, 0, 5000, 10)
    assert (v.answered, v.missing, v.duplicates, v.inversions, v.stray) == (3, 1, 1, 1, 1)
    assert v.users_wrong == 0  # "551" got 3 replies for 3 messages: only per message shows it
    assert not v.ok
    assert sorted(round(x) for x in v.beyond_ms) == [100, 100, 1200]
