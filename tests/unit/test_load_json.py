"""The webhook's JSON reading: a fast decoder first, the standard library for what it
refuses, so that every body reads exactly as `json.loads` read it before."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ingest.app import load_json
from zapstream.errors import InvalidPayload

WEBHOOKS = sorted((Path(__file__).parents[1] / "fixtures" / "webhooks").rglob("*.json"))


@pytest.mark.parametrize("path", WEBHOOKS, ids=lambda p: p.name)
def test_every_fixture_reads_as_the_standard_library_reads_it(path: Path) -> None:
    body = path.read_bytes()
    assert load_json(body) == json.loads(body)


def test_there_are_fixtures_to_compare() -> None:
    assert len(WEBHOOKS) >= 10


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),
        (b'{"t": "\\ud800x"}', {"t": "\ud800x"}),  # a lone surrogate: kept, not refused
        ('\ufeff{"a": 1}'.encode(), {"a": 1}),  # a UTF-8 BOM
        ('{"a": "olá"}'.encode("utf-16"), {"a": "olá"}),
        (b'{"a": 1, "a": 2}', {"a": 2}),
    ],
)
def test_bodies_the_fast_decoder_refuses_still_read_as_before(
    body: bytes, expected: object
) -> None:
    assert load_json(body) == expected


def test_a_number_beyond_a_double_reads_as_infinity_as_before() -> None:
    assert math.isinf(load_json(b'{"x": 1e999}')["x"])


@pytest.mark.parametrize(
    "body", [b'{"a": NaN}', b'{"a": -Infinity}', b"\xff", b'{"a": 1} trailing', b"", b"{"]
)
def test_what_is_not_json_is_an_invalid_payload(body: bytes) -> None:
    with pytest.raises(InvalidPayload):
        load_json(body)
