"""Pure: the period a report or an export covers, from `--from`/`--to` text.

A bound is an ISO 8601 time (`2026-11-30T09:00`, `2026-11-30T09:00:00-03:00`, a date
`2026-11-30` is its midnight; no zone means UTC) or a span back from now (`90s`,
`30m`, `2h`, `7d`, `2w`); `now` is now. The period is half-open, [from, to), in UTC.
Defaults: to = now, from = to - 7 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from zapstream.errors import InvalidPayload

DEFAULT_SPAN = timedelta(days=7)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class InvalidPeriod(InvalidPayload):
    """A `--from`/`--to` that is neither an ISO time nor a span like `7d`."""


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def sql_bounds(self) -> tuple[str, str]:
        """The bounds as DuckDB TIMESTAMPTZ literals (built from datetimes, never text)."""
        return _literal(self.start), _literal(self.end)

    def as_dict(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end)}


def parse_time(text: str, now: datetime) -> datetime:
    """One bound: ISO time, a span back from `now` (`7d`), or `now`."""
    value = text.strip()
    if value.lower() == "now":
        return now
    rel = _RELATIVE.match(value)
    if rel:
        return now - timedelta(seconds=float(rel.group(1)) * _UNITS[rel.group(2).lower()])
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidPeriod(
            f"{text!r} is not a time: use ISO 8601 (2026-11-30T09:00Z) or a span like 2h, 7d"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_period(start: str | None, end: str | None, now: datetime) -> Period:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    stop = parse_time(end, now) if end else now
    begin = parse_time(start, now) if start else stop - DEFAULT_SPAN
    if begin >= stop:
        raise InvalidPeriod(f"the period is empty: from {iso(begin)} is not before to {iso(stop)}")
    return Period(begin, stop)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _literal(at: datetime) -> str:
    return f"TIMESTAMPTZ '{at.astimezone(UTC).isoformat()}'"
