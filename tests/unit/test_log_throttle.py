"""A repeated warning (a broker outage seen by every request) is logged once per
interval and per reason, saying how many were held back. The clock is a stand-in."""

from __future__ import annotations

import logging

from zapstream.log_throttle import LogThrottle, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_line_goes_out_and_repeats_are_counted_until_the_interval_ends() -> None:
    clock = Clock()
    throttle = LogThrottle(interval_s=10.0, clock=clock)
    assert throttle.ready("refused") == 0
    assert [throttle.ready("refused") for _ in range(5)] == [None] * 5
    clock.now += 10.0
    assert throttle.ready("refused") == 5  # "... and 5 more like it"
    assert throttle.ready("refused") is None


def test_a_new_reason_is_logged_at_once() -> None:
    throttle = LogThrottle(interval_s=10.0, clock=Clock())
    assert throttle.ready("connection refused") == 0
    assert throttle.ready("unknown host") == 0
    assert throttle.ready("connection refused") is None


def test_a_library_repeating_the_same_error_is_logged_once_per_interval() -> None:
    clock = Clock()
    repeat = RepeatFilter(("aiokafka",), interval_s=10.0, clock=clock)

    def record(name: str, text: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, text, None, None)

    refused = 'Unable connect to "127.0.0.1:9999": [Errno 111] Connection refused'
    assert repeat.filter(record("aiokafka.client", refused))
    assert not any(repeat.filter(record("aiokafka.client", refused)) for _ in range(4))
    assert repeat.filter(record("faust.worker", refused))  # not a throttled logger
    clock.now += 10.0
    again = record("aiokafka.client", refused)
    assert repeat.filter(again)
    assert again.getMessage() == f"{refused} (4 more like it held back)"
