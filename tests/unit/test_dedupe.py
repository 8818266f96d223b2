"""Dedupe: a redelivered message is caught for the horizon, and the state stays bounded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from processors.dedupe import DedupeConfig, DedupeState, check, prune

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
WEEK = DedupeConfig()


def test_first_sighting_is_not_a_duplicate():
    seen = check(None, "wamid.1", T0, WEEK)
    assert seen.duplicate is False
    assert "wamid.1" in seen.state


def test_redelivery_within_the_horizon_is_a_duplicate():
    state = check(None, "wamid.1", T0, WEEK).state
    again = check(state, "wamid.1", T0 + timedelta(days=6), WEEK)
    assert again.duplicate is True


def test_entries_expire_after_the_horizon():
    state = check(None, "wamid.1", T0, WEEK).state
    later = T0 + timedelta(days=7, seconds=1)
    assert check(state, "wamid.1", later, WEEK).duplicate is False
    assert prune(state, later, WEEK) == {}


def test_a_duplicate_does_not_extend_its_own_life():
    cfg = DedupeConfig(horizon_s=100)
    state = check(None, "m", T0, cfg).state
    state = check(state, "m", T0 + timedelta(seconds=90), cfg).state
    assert check(state, "m", T0 + timedelta(seconds=101), cfg).duplicate is False


def test_other_ids_are_pruned_on_every_touch():
    cfg = DedupeConfig(horizon_s=60)
    state = check(None, "old", T0, cfg).state
    state = check(state, "new", T0 + timedelta(seconds=61), cfg).state
    assert set(state) == {"new"}


def test_state_is_capped_keeping_the_newest_ids():
    cfg = DedupeConfig(max_entries=3)
    state: DedupeState = {}
    for i in range(10):
        state = check(state, f"m{i}", T0 + timedelta(seconds=i), cfg).state
    assert list(state) == ["m7", "m8", "m9"]
    assert check(state, "m9", T0 + timedelta(seconds=20), cfg).duplicate is True


def test_state_is_plain_json_for_a_faust_table():
    state = check(None, "wamid.1", T0, WEEK).state
    restored = json.loads(json.dumps(state))
    assert check(restored, "wamid.1", T0 + timedelta(hours=1), WEEK).duplicate is True


def test_replaying_the_same_events_decides_the_same_way():
    events = [("a", 0), ("b", 1), ("a", 2), ("c", 3), ("b", 4)]

    def run() -> list[bool]:
        state: DedupeState | None = None
        out = []
        for mid, s in events:
            seen = check(state, mid, T0 + timedelta(seconds=s), WEEK)
            state = seen.state
            out.append(seen.duplicate)
        return out

    assert run() == run() == [False, False, True, False, True]


def test_the_input_state_is_not_mutated():
    state = {"a": T0.timestamp()}
    check(state, "b", T0, WEEK)
    assert state == {"a": T0.timestamp()}


def test_the_same_kafka_record_replayed_after_a_crash_is_not_a_duplicate() -> None:
    from datetime import UTC, datetime

    from processors.dedupe import DedupeConfig, check

    cfg = DedupeConfig()
    now = datetime(2026, 11, 26, tzinfo=UTC)
    first = check(None, "wamid.A", now, cfg, origin="3:120")
    assert not first.duplicate
    replay = check(first.state, "wamid.A", now, cfg, origin="3:120")
    assert not replay.duplicate  # its work may not have finished before the crash
    redelivery = check(replay.state, "wamid.A", now, cfg, origin="3:987")
    assert redelivery.duplicate  # Meta sent it again: a different record
