"""Pure: a batch of Kafka records to rows per table, and rows to Arrow. No DuckDB here.

`decode_batch` runs on the sink's decoder thread and builds the Arrow tables there
too, so the writer thread only loads.

Rows stay grouped by table in arrival order, each with the index of the record that
made it, so the loader can leave out the records DuckDB refuses and load the rest
(`TableRows.arrow(exclude=...)`). An event that does not decode becomes a row of
`rejected_events` with the reason, never an exception. Debounce ticks, which share
the inbound topic, are skipped.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from processors.ticker import TICK_PREFIX
from schemas.control import is_control
from sinks.routes import Route
from sinks.rows import Row
from sinks.tables import TableSpec
from zapstream.errors import InvalidPayload

log = logging.getLogger("zapstream.sink")

SEQ = "_seq"
"""Arrow-only column: a row's place in the batch (the loader orders ties by it)."""


class Record(Protocol):
    """What the sink needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class TableRows:
    spec: TableSpec
    rows: list[Row] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)
    """Index in `Decoded.records` of the record each row came from."""
    built: pa.Table | None = None
    """All the rows as Arrow, built ahead (on the decoder thread) where they convert."""
    _seen: set[Any] | None = field(default=None, repr=False)
    _key: Callable[[Row], Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._key = operator.itemgetter(*(self.spec.columns.index(c) for c in self.spec.key))
        if not self.spec.latest_by:
            self._seen = set()

    def add(self, row: Row, source: int) -> None:
        """Keep `row`, unless it repeats a key of an insert-only table: there the first
        row of a key wins within a batch, as it does across batches (the loader's
        INSERT OR IGNORE). Snapshot tables keep every row; the loader picks the latest."""
        if self._seen is not None:
            key = self._key(row)
            if key in self._seen:
                return
            self._seen.add(key)
        self.rows.append(row)
        self.sources.append(source)

    def prebuild(self) -> None:
        try:
            self.built = self.arrow()
        except Exception:  # the loader builds them again and says why
            self.built = None

    def arrow(
        self, include: Container[int] | None = None, exclude: Container[int] = ()
    ) -> pa.Table:
        """The rows (of the records in `include`, if given, and not in `exclude`) as Arrow."""
        rows = self.rows
        if include is None and not exclude and self.built is not None:
            return self.built
        if include is not None or exclude:
            rows = [
                r
                for r, src in zip(self.rows, self.sources, strict=True)
                if (include is None or src in include) and src not in exclude
            ]
        return to_arrow(self.spec, rows)


@dataclass
class Decoded:
    records: Sequence[Record]
    tables: dict[str, TableRows]
    rejected: list[Row]

    def sources(self) -> list[int]:
        """The records that made at least one row, in order."""
        return sorted({src for t in self.tables.values() for src in t.sources})


def decode_batch(
    records: Sequence[Record], routes: Mapping[str, Route], specs: Mapping[str, TableSpec]
) -> Decoded:
    tables = {name: TableRows(specs[name]) for r in routes.values() for name, _ in r.targets}
    rejected: list[Row] = []
    for i, rec in enumerate(records):
        value = rec.value
        if value is not None and (value.startswith(TICK_PREFIX) or is_control(value)):
            continue  # ticks and control records share the inbound topic; not messages
        try:
            if value is None:
                raise ValueError("no value (a tombstone)")
            pairs = routes[rec.topic].rows(value)
        except Exception as exc:  # whatever an event does, it must not stop the batch
            reason = _reason(exc)
            log.error(
                "rejected event",
                extra={
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "offset": rec.offset,
                    "reason": reason[:200],
                },
            )
            text = (value or b"").decode("utf-8", "replace")
            rejected.append((rec.topic, rec.partition, rec.offset, reason[:2000], text))
            continue
        for name, row in pairs:
            tables[name].add(row, i)
    for t in tables.values():
        t.prebuild()
    return Decoded(records, tables, rejected)


def _reason(exc: Exception) -> str:
    if isinstance(exc, InvalidPayload):
        return exc.reason
    if isinstance(exc, KeyError):
        return f"no table takes topic {exc}"
    return f"{type(exc).__name__}: {exc}"


def to_arrow(spec: TableSpec, rows: Sequence[Row]) -> pa.Table:
    """Rows (tuples in column order) to Arrow, column by column, plus `_seq`."""
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in spec.schema]
    if len(columns) != len(spec.schema):
        raise ValueError(
            f"{spec.name}: rows have {len(columns)} columns, the table {len(spec.schema)}"
        )
    arrays = [pa.array(col, type=f.type) for col, f in zip(columns, spec.schema, strict=True)]
    arrays.append(pa.array(range(n), type=pa.int64()))
    return pa.Table.from_arrays(arrays, names=[*spec.schema.names, SEQ])
