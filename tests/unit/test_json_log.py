"""JSON log lines: one valid JSON document per record, whatever the extras hold."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from zapstream.log import JsonFormatter, MaskingFilter


def line(**extras: object) -> dict[str, object]:
    record = logging.LogRecord("zapstream.worker", logging.INFO, __file__, 1, "turn", None, None)
    record.created = 1796073442.9996
    for key, value in extras.items():
        setattr(record, key, value)
    MaskingFilter().filter(record)
    text = JsonFormatter().format(record)
    assert "\n" not in text
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


def test_a_line_carries_time_level_logger_event_and_the_extras() -> None:
    doc = line(turn_id="turn_1", messages=2, actions=["SendText"], latency_ms=1.5)
    assert doc == {
        "ts": datetime.fromtimestamp(1796073442.9996, UTC).isoformat(timespec="milliseconds"),
        "level": "info",
        "logger": "zapstream.worker",
        "event": "turn",
        "turn_id": "turn_1",
        "messages": 2,
        "actions": ["SendText"],
        "latency_ms": 1.5,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({1: "a"}, {"1": "a"}),  # keys that are not strings
        (datetime(2026, 11, 30, 12, tzinfo=UTC), "2026-11-30T12:00:00+00:00"),
        (object, str(object)),  # anything else: its str()
        ("olá \ud800", "olá \ud800"),  # a lone surrogate: the standard library writes it
    ],
)
def test_extras_of_any_kind_still_make_one_json_line(value: object, expected: object) -> None:
    assert line(extra_value=value)["extra_value"] == expected


def test_phone_numbers_in_extras_are_masked_in_the_line() -> None:
    assert line(note="from 5511987654321")["note"] == "from 55*******4321"
