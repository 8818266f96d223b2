from datetime import UTC, datetime, timedelta, timezone

import pytest

from zapstream.analytics.period import InvalidPeriod, Period, iso, parse_period, parse_time
from zapstream.analytics.report import buckets

NOW = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)


def test_spans_count_back_from_now() -> None:
    assert parse_time("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_time("7d", NOW) == NOW - timedelta(days=7)
    assert parse_time("90s", NOW) == NOW - timedelta(seconds=90)
    assert parse_time("1.5w", NOW) == NOW - timedelta(days=10.5)
    assert parse_time("now", NOW) == NOW


def test_iso_times_without_a_zone_are_utc_and_others_are_converted() -> None:
    assert parse_time("2026-11-02", NOW) == datetime(2026, 11, 2, tzinfo=UTC)
    assert parse_time("2026-11-02T09:00", NOW) == datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert parse_time("2026-11-02T09:00Z", NOW) == datetime(2026, 11, 2, 9, tzinfo=UTC)
    got = parse_time("2026-11-02T09:00-03:00", NOW)
    assert got == datetime(2026, 11, 2, 12, tzinfo=UTC)
    assert got.tzinfo == UTC


def test_defaults_are_the_last_seven_days() -> None:
    assert parse_period(None, None, NOW) == Period(NOW - timedelta(days=7), NOW)
    assert parse_period("1d", None, NOW) == Period(NOW - timedelta(days=1), NOW)
    local = NOW.astimezone(timezone(timedelta(hours=-3)))
    assert parse_period(None, None, local).end == NOW


@pytest.mark.parametrize(("start", "end"), [("yesterday", None), ("2026-13-01", None), ("1h", "2h")])
def test_a_bad_or_empty_period_is_a_clear_error(start: str, end: str | None) -> None:
    with pytest.raises(InvalidPeriod):
        parse_period(start, end, NOW)


def test_sql_bounds_are_utc_literals() -> None:
    p = Period(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    assert p.sql_bounds() == (
        "TIMESTAMPTZ '2026-11-02T00:00:00+00:00'",
        "TIMESTAMPTZ '2026-11-03T00:00:00+00:00'",
    )
    assert p.as_dict() == {"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"}
    assert iso(NOW) == "2026-11-30T12:34:56Z"


def test_buckets_cover_every_hour_and_day_the_period_touches() -> None:
    p = Period(datetime(2026, 11, 2, 22, 30, tzinfo=UTC), datetime(2026, 11, 3, 1, 0, tzinfo=UTC))
    assert buckets(p, "hour") == [
        "2026-11-02T22:00:00Z",
        "2026-11-02T23:00:00Z",
        "2026-11-03T00:00:00Z",
    ]
    assert buckets(p, "day") == ["2026-11-02", "2026-11-03"]
