"""The sink's fast decode (msgspec mirrors) makes exactly the rows the pydantic path makes.

Every stored sample and every webhook fixture, and variants of them that the mirrors
must refuse or read the same way: where a mirror takes a value, its rows equal the
rows of `schemas.codec.decode`; where it refuses, the pydantic path decides.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import msgspec
import orjson
import pytest
from pydantic import BaseModel

from ingest.parse import parse_webhook
from schemas.codec import decode, encode
from schemas.conversation import Session
from schemas.handoff import HandoffEvent
from schemas.processing import ProcessingDeadLetter
from schemas.reengagement import Reengagement
from schemas.replay import ReplayDecided, ReplayRunFinished
from schemas.topics import Topics
from sinks import wire
from sinks.routes import Route, routes
from sinks.rows import json_text
from sinks.tables import TABLES
from tests.support.events import decided, embedding_computed, send_result
from zapstream.errors import InvalidPayload
from zapstream.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOPICS = Topics.from_settings(Settings())
ROUTES = routes(TOPICS)
BY_KIND = {r.model.__name__: r for r in ROUTES.values()}


def samples() -> list[tuple[str, bytes]]:
    """(event type, encoded event) for every fixture the sink may read."""
    out: list[tuple[str, bytes]] = []
    for folder, kinds in (
        (
            "events/v1",
            {
                "message": "MessageReceived",
                "status": "StatusReceived",
                "webhook": "WebhookUnrecognized",
            },
        ),
        (
            "outbound/v1",
            {"dead": "DeadLetter", "outbound": "OutboundMessage", "send": "SendResult"},
        ),
        ("media/v1", {"media": "MediaFetched"}),
    ):
        for path in sorted((FIXTURES / folder).glob("*.json")):
            kind = kinds[path.stem.split("_")[0]]
            out.append((kind, path.read_bytes()))
    received = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
    for path in sorted((FIXTURES / "webhooks").glob("*.json")):
        parsed = parse_webhook(json.loads(path.read_bytes()), received)
        out += [("MessageReceived", encode(m)) for m in parsed.messages]
        out += [("StatusReceived", encode(s)) for s in parsed.statuses]
        out += [("WebhookUnrecognized", encode(u)) for u in parsed.unrecognized]
    out.append(
        ("TurnDecided", encode(decided("t1", user="55119", updated_at=received, turn_count=3)))
    )
    out.append(("SendResult", encode(send_result(4))))
    out.append(("EmbeddingComputed", encode(embedding_computed(received))))
    out.append(
        (
            "ProcessingDeadLetter",
            encode(
                ProcessingDeadLetter(
                    stage="converse",
                    topic="zapstream.turns.decided.v1",
                    partition=3,
                    offset=41,
                    user_id="5511987654321",
                    error_type="InvalidPayload",
                    reason="bad turn",
                    retryable=False,
                    attempts=2,
                    value_b64=ProcessingDeadLetter.encode_value(b"\xff{not json"),
                    failed_at=received,
                )
            ),
        )
    )
    out.append(
        (
            "HandoffEvent",
            encode(
                HandoffEvent(
                    event_id="hnd_1:opened",
                    event="opened",
                    handoff_id="hnd_1",
                    user_id="5511987654321",
                    at=received,
                    wa_id="5511987654321",
                    reason="asked",
                    source="engine",
                    turn_id="t1",
                    text="quero falar com um atendente",
                    opened_at=received,
                )
            ),
        )
    )
    for event, returned in (("sent", None), ("returned", received)):
        reengaged = Reengagement(
            event=event,  # type: ignore[arg-type]
            reengagement_id="reng_1",
            user_id="5511987654321",
            quiet_since=datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC),
            sent_at=datetime(2026, 11, 26, 11, 0, 0, tzinfo=UTC),
            kind="text",
            outbound_id="out_1",
            returned_at=returned,
        )
        out.append(("Reengagement", encode(reengaged)))
    out.append(
        (
            "ReplayDecided",
            encode(
                ReplayDecided(
                    run_id="replay-1",
                    turn_id="turn-1",
                    user_id="5511987654321",
                    engine="playbook",
                    engine_version="abc",
                    intent="greeting",
                    actions=[{"action": "send_text", "text": "olá"}],
                    message_ids=["wamid.1"],
                    original_intent="fallback",
                    decided_at=received,
                )
            ),
        )
    )
    out.append(
        (
            "ReplayRunFinished",
            encode(
                ReplayRunFinished(
                    run_id="replay-1",
                    started_at=received,
                    finished_at=received,
                    engine="playbook",
                    engine_version="abc",
                    topic="zapstream.messages.inbound.v1",
                    selection={"from": None, "ranges": ["0:0-10"]},
                    events=10,
                    turns=4,
                )
            ),
        )
    )
    return out


def rows_both_ways(route: Route, value: bytes) -> tuple[Any, Any]:
    """(rows from the mirror or None if it refuses, rows from pydantic or the error).
    A row function that raises gives ("raises", the exception's type) instead of rows."""
    fast = route.decode_fast(value)
    fast_rows = None if fast is None else _rows(route, fast)
    try:
        slow = decode(route.model, value)
    except InvalidPayload as exc:
        return fast_rows, exc
    return fast_rows, _rows(route, slow)


def _rows(route: Route, event: Any) -> Any:
    try:
        return [make(event) for _, make in route.targets]
    except Exception as exc:
        return ("raises", type(exc))


def test_the_samples_cover_every_route() -> None:
    assert {kind for kind, _ in samples()} == set(BY_KIND)


@pytest.mark.parametrize(("kind", "value"), samples())
def test_the_mirror_reads_every_sample_and_makes_the_same_rows(kind: str, value: bytes) -> None:
    fast, slow = rows_both_ways(BY_KIND[kind], value)
    assert fast is not None, "the fast path should take what our own encoder writes"
    assert fast == slow


ODD_VALUES: tuple[Any, ...] = (
    None, 1, 1.5, "1", True, [], {}, "2026-11-26T12:00:00.1234567Z", "2026-11-26",
    1764158400, float(2**64), 2**70,
)  # fmt: skip


def _variants(doc: Any) -> list[Any]:
    """Documents one change away from `doc`: each field dropped, nulled, retyped."""
    out: list[Any] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            rest = {x: y for x, y in doc.items() if x != k}
            out.append(rest)
            out += [{**rest, k: other} for other in ODD_VALUES]
            out += [{**rest, k: sub} for sub in _variants(v)]
        out.append({**doc, "schema_version": 2})
        out.append({**doc, "unknown_field": {"x": 1}})
    elif isinstance(doc, list) and doc:
        out += [[sub, *doc[1:]] for sub in _variants(doc[0])]
    elif isinstance(doc, str) and "T" in doc and doc[:4].isdigit():
        out += [doc.replace("Z", "+02:00"), doc.rstrip("Z"), doc.replace("T", " ")]
    return out


@pytest.mark.parametrize(("kind", "value"), samples()[::3])
def test_where_the_mirror_takes_a_variant_it_makes_the_pydantic_rows(
    kind: str, value: bytes
) -> None:
    route = BY_KIND[kind]
    took = 0
    for variant in _variants(json.loads(value)):
        data = json.dumps(variant).encode()
        fast, slow = rows_both_ways(route, data)
        if fast is not None:
            took += 1
            assert not isinstance(slow, Exception), f"mirror took what pydantic refuses: {data!r}"
            assert fast == slow, data
    assert took  # the comparison ran


def test_each_mirror_has_the_fields_of_its_model() -> None:
    pairs: list[tuple[type[wire.Wire], type[BaseModel]]] = [
        (r.mirror, r.model) for r in ROUTES.values()
    ]
    seen: set[type[Any]] = set()
    while pairs:
        mirror, model = pairs.pop()
        if mirror in seen:
            continue
        seen.add(mirror)
        fields = {f.encode_name: f for f in msgspec.structs.fields(mirror)}
        fields.pop("from_", None)  # the model's populate_by_name twin of "from"
        names = {f.alias or name: f for name, f in model.model_fields.items()}
        assert set(fields) == set(names), mirror.__name__
        for name, f in names.items():
            assert fields[name].required == f.is_required(), f"{mirror.__name__}.{name}"
            nested = _model_in(f.annotation)
            if nested is not None:
                pairs.append((_mirror_in(fields[name].type), nested))
    assert {wire.MediaRef, wire.MessageContext, wire.ApiErrorInfo, wire.Session} <= seen


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `annotation` (`X`, `X | None`, `list[X]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _mirror_in(annotation: Any) -> type[wire.Wire]:
    if isinstance(annotation, type) and issubclass(annotation, wire.Wire):
        return annotation
    for arg in get_args(annotation):
        if (isinstance(arg, type) and issubclass(arg, wire.Wire)) or get_args(arg):
            return _mirror_in(arg)
    raise AssertionError(annotation)


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True, 'é\n\t"\\'], "c": {"d": -0.0, "e": 10**30}},
        [],
        {},
        ["\u2028", "\x00", "😀", 1e-7, 1e16, math.inf, -math.inf],
        "text",
        7,
        None,
    ],
)
def test_json_text_is_what_json_dumps_writes(value: Any) -> None:
    expected = None if value is None else json.dumps(value, ensure_ascii=False, default=str)
    assert json_text(value) == expected


# Columns that are not simply the event's attribute of the same name.
DERIVED: dict[str, set[str]] = {
    "messages": {"media_id", "reply_id", "context_message_id"},
    "statuses": {"error_code", "error_title"},
    "turns": {"message_count", "session"},
    "processing_dead_letters": {"value"},
    "embeddings": {"vector"},
    "handoff_events": {"event_at"},
}


@pytest.mark.parametrize(("kind", "value"), samples())
def test_each_column_holds_the_event_field_of_its_name(kind: str, value: bytes) -> None:
    """Rows are tuples in column order: a column out of place shows up here."""
    route = BY_KIND[kind]
    event: Any = decode(route.model, value)
    for table, make in route.targets:
        spec = TABLES[table]
        row = dict(zip(spec.columns, make(event), strict=True))
        source = event.session if table == "sessions" else event
        for column, got in row.items():
            if column in DERIVED.get(table, set()):
                continue
            want = getattr(source, column)
            if column in spec.json_columns:
                want = json_text(want)
            assert got == want, f"{table}.{column}"
    if kind == "TurnDecided":
        row = dict(zip(TABLES["turns"].columns, route.targets[0][1](event), strict=True))
        # the session after the turn, read back whole (replay starts users from it)
        assert Session.model_validate_json(row["session"]) == Session.model_validate(
            orjson.loads(value)["session"]
        )
    if kind == "MessageReceived":
        row = dict(zip(TABLES["messages"].columns, route.targets[0][1](event), strict=True))
        assert row["media_id"] == (event.media.id if event.media else None)
        assert row["reply_id"] == (event.reply.id if event.reply else None)
        assert row["context_message_id"] == (event.context.message_id if event.context else None)
    if kind == "StatusReceived":
        row = dict(zip(TABLES["statuses"].columns, route.targets[0][1](event), strict=True))
        first = event.errors[0] if event.errors else None
        assert (row["error_code"], row["error_title"]) == (
            (first.code, first.title) if first else (None, None)
        )
    if kind == "TurnDecided":
        row = dict(zip(TABLES["turns"].columns, route.targets[0][1](event), strict=True))
        assert row["message_count"] == len(event.message_ids)
    if kind == "EmbeddingComputed":
        row = dict(zip(TABLES["embeddings"].columns, route.targets[0][1](event), strict=True))
        assert row["vector"] == event.vector.tolist()
    if kind == "ProcessingDeadLetter":
        row = dict(
            zip(TABLES["processing_dead_letters"].columns, route.targets[0][1](event), strict=True)
        )
        assert row["value"] == event.value.decode("utf-8", "replace")
