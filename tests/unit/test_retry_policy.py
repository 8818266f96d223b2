from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from processors.retry_policy import (
    RetryPolicy,
    backoff_delay,
    classify,
    parse_retry_after,
    regain_access_after,
)
from zapstream.errors import (
    GraphPermanentError,
    GraphRateLimited,
    GraphTransientError,
)


def graph_body(code: int, message: str = "boom", details: str | None = None) -> dict:
    error: dict = {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


@pytest.mark.parametrize("code", [4, 80007, 130429, 131048])
def test_throttling_codes_are_rate_limited_for_the_whole_sender(code):
    error = classify(400, graph_body(code), {}, None)
    assert isinstance(error, GraphRateLimited)
    assert error.retryable
    assert not error.per_recipient
    assert error.code == code


def test_pair_rate_limit_slows_down_only_that_recipient():
    error = classify(400, graph_body(131056), {}, None)
    assert isinstance(error, GraphRateLimited)
    assert error.per_recipient
    assert error.retryable


@pytest.mark.parametrize("code", [1, 2, 131000, 131016, 131057, 133004])
def test_meta_side_outages_are_transient(code):
    error = classify(500, graph_body(code), {}, None)
    assert type(error) is GraphTransientError
    assert error.retryable


PERMANENT = """0 3 10 100 190 200 299 368 470 130497 131008 131009 131021 131026 131031
131047 131049 131050 131051 131052 131053 131062 132000 132001 132015 132069"""


@pytest.mark.parametrize("code", [int(c) for c in PERMANENT.split()])
def test_permanent_codes_are_never_retried(code):
    error = classify(400, graph_body(code), {}, None)
    assert isinstance(error, GraphPermanentError)
    assert not error.retryable
    assert error.code == code


def test_the_graph_code_wins_over_the_http_status():
    assert isinstance(classify(500, graph_body(3), {}, None), GraphPermanentError)
    assert isinstance(classify(500, graph_body(131045), {}, None), GraphPermanentError)
    assert isinstance(classify(400, graph_body(130429), {}, None), GraphRateLimited)
    assert type(classify(400, graph_body(131000), {}, None)) is GraphTransientError


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, GraphPermanentError),
        (403, GraphPermanentError),
        (404, GraphPermanentError),
        (408, GraphTransientError),
        (429, GraphRateLimited),
        (500, GraphTransientError),
        (502, GraphTransientError),
        (503, GraphTransientError),
    ],
)
def test_an_unknown_code_falls_back_to_the_http_status(status, expected):
    assert type(classify(status, graph_body(999_999), {}, None)) is expected
    assert type(classify(status, None, {}, None)) is expected


def test_the_error_carries_ids_and_codes_as_context():
    body = graph_body(131026)
    body["error"]["error_subcode"] = 2494010
    error = classify(400, body, {}, None, outbound_id="out_1")
    assert (error.status_code, error.code, error.subcode, error.outbound_id) == (
        400,
        131026,
        2494010,
        "out_1",
    )
    assert "131026" in str(error)


def test_a_phone_number_quoted_by_meta_is_masked_in_the_reason():
    error = classify(400, graph_body(131026, details="recipient 5511987654321 unknown"), {}, None)
    assert "5511987654321" not in str(error)
    assert "55*******4321" in str(error)


def test_a_long_reason_is_truncated():
    error = classify(400, graph_body(100, message="x" * 5000), {}, None)
    assert len(str(error)) <= 300


def test_retry_after_in_seconds_is_honoured():
    error = classify(429, graph_body(130429), {"Retry-After": "7"}, None)
    assert isinstance(error, GraphRateLimited)
    assert error.retry_after == 7.0


def test_retry_after_as_an_http_date_needs_now():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after(later, now=None) is None
    error = classify(429, None, {"retry-after": later}, None, now=now.timestamp())
    assert isinstance(error, GraphRateLimited)
    assert error.retry_after == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("-5", 0.0),
        ("1.5", 1.5),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_values_are_parsed_defensively(value, expected):
    assert parse_retry_after(value, now=0.0) == expected


def test_a_503_that_says_when_to_come_back_carries_the_delay():
    error = classify(503, None, {"Retry-After": "3"}, None)
    assert isinstance(error, GraphRateLimited)
    assert error.retry_after == 3.0


def test_business_use_case_usage_gives_the_time_to_regain_access():
    usage = {"123": [{"type": "whatsapp", "call_count": 100, "estimated_time_to_regain_access": 2}]}
    headers = {"X-Business-Use-Case-Usage": json.dumps(usage)}
    assert regain_access_after(headers) == 120.0
    error = classify(400, graph_body(80007), headers, None)
    assert isinstance(error, GraphRateLimited)
    assert error.retry_after == 120.0
    assert regain_access_after({"X-Business-Use-Case-Usage": "not json"}) is None


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectTimeout("t"),
        httpx.ReadTimeout("t"),
        httpx.PoolTimeout("t"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("eof"),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_no_answer_at_all_is_transient(exc):
    error = classify(None, None, {}, exc, outbound_id="out_2")
    assert type(error) is GraphTransientError
    assert error.outbound_id == "out_2"


@pytest.mark.parametrize("exc", [httpx.UnsupportedProtocol("ftp"), ValueError("bug")])
def test_a_broken_request_of_ours_is_permanent(exc):
    assert isinstance(classify(None, None, {}, exc), GraphPermanentError)


def test_backoff_uses_full_jitter_below_an_exponential_ceiling():
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)]:
        delays = [backoff_delay(attempt, base=0.5, cap=30.0, rng=rng) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range


def test_backoff_never_goes_below_retry_after_even_above_the_cap():
    rng = random.Random(2)
    assert backoff_delay(1, base=0.5, cap=1.0, rng=rng, retry_after=10.0) == 10.0
    assert backoff_delay(3, base=0.5, cap=30.0, rng=rng, retry_after=0.1) >= 0.1


def test_backoff_survives_a_huge_attempt_count():
    assert 0.0 <= backoff_delay(10_000, base=0.5, cap=30.0, rng=random.Random(3)) <= 30.0


def test_backoff_is_deterministic_for_a_seeded_rng():
    a = [backoff_delay(i, base=0.1, cap=5, rng=random.Random(9)) for i in range(1, 6)]
    b = [backoff_delay(i, base=0.1, cap=5, rng=random.Random(9)) for i in range(1, 6)]
    assert a == b


def test_policy_gives_up_on_permanent_errors_at_once():
    policy = RetryPolicy()
    error = classify(400, graph_body(131026), {}, None)
    assert policy.next_delay(error, attempts=1, elapsed=0.0, rng=random.Random(0)) is None


def test_policy_gives_up_after_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    error = classify(500, None, {}, None)
    rng = random.Random(0)
    assert policy.next_delay(error, attempts=2, elapsed=0.0, rng=rng) is not None
    assert policy.next_delay(error, attempts=3, elapsed=0.0, rng=rng) is None


def test_policy_gives_up_when_the_delay_would_pass_max_elapsed():
    policy = RetryPolicy(max_elapsed=60.0)
    error = classify(429, graph_body(130429), {"Retry-After": "30"}, None)
    rng = random.Random(0)
    assert policy.next_delay(error, attempts=1, elapsed=20.0, rng=rng) == pytest.approx(
        30.0, abs=0.5
    )
    assert policy.next_delay(error, attempts=1, elapsed=40.0, rng=rng) is None


def test_policy_waits_at_least_the_pair_rate_interval_after_131056():
    policy = RetryPolicy(pair_rate_delay=6.0)
    error = classify(400, graph_body(131056), {}, None)
    delays = [
        policy.next_delay(error, attempts=1, elapsed=0, rng=random.Random(i)) for i in range(20)
    ]
    assert all(d is not None and d >= 6.0 for d in delays)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base": 0},
        {"base": 5, "cap": 1},
        {"max_elapsed": 0},
        {"pair_rate_delay": -1},
    ],
)
def test_policy_refuses_nonsense_settings(kwargs):
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)
