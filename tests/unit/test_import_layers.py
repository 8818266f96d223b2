"""No import cycles, and no layer imports the one above it.

Layers, lowest first; a module may import its own layer and the layers below:

    shared       zapstream/ top-level modules: settings, errors, log, kafka_*, ...
    schemas      schemas/: versioned records, topic names
    pipeline     ingest/, processors/, sinks/: the product's processes
    dev tools    zapstream/brokers/, zapstream/sandbox/, zapstream/supervisor/
    entry point  zapstream/cli.py

tests/ and bench/ may import anything (but take part in the cycle check).
A new module directly under zapstream/ counts as shared: development tools go into
their subpackage.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.import_graph import ImportGraph, build, cycles

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("shared", ("zapstream",)),
    ("schemas", ("schemas",)),
    ("pipeline", ("ingest", "processors", "sinks")),
    ("dev tools", ("zapstream.brokers", "zapstream.sandbox", "zapstream.supervisor")),
    ("entry point", ("zapstream.cli",)),
]



def layer_of(module: str) -> int | None:
    """Index in LAYERS (longest matching prefix wins); None: not layered (tests, bench)."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def layer_breaks(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    found = set()
    for module, targets in edges.items():
        own = layer_of(module)
        if own is None:
            continue
        for target in targets:
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                found.add((module, target))
    return found


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build(ROOT)


def test_the_graph_reads_the_whole_project(graph: ImportGraph) -> None:
    assert {"zapstream.settings", "zapstream.cli", "ingest.app", "schemas.topics"} <= graph.modules
    assert "zapstream.settings" in graph.edges["zapstream.cli"]
    assert "processors.agents" in graph.edges["zapstream.supervisor.runners"]  # a lazy import counts


def test_no_module_is_part_of_an_import_cycle(graph: ImportGraph) -> None:
    found = [sorted(c) for c in cycles(graph.edges)]
    assert not found, f"import cycles (move what both sides need to a module both import): {found}"


def test_no_layer_imports_the_one_above_it(graph: ImportGraph) -> None:
    found = sorted(layer_breaks(graph.all_edges()))
    names = [name for name, _ in LAYERS]
    assert not found, [
        f"{a} ({names[layer_of(a) or 0]}) imports {b} ({names[layer_of(b) or 0]})" for a, b in found
    ]


def test_a_cycle_through_a_function_level_import_is_found() -> None:
    edges = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "b": {"a.x"}}
    assert cycles(edges) == [frozenset({"a.x", "a.y", "a.z"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_layers_place_modules_by_their_longest_prefix() -> None:
    assert layer_of("zapstream.settings") == 0
    assert layer_of("zapstream.brokers.tansu") == 3
    assert layer_of("zapstream.cli") == 4
    assert layer_of("tests.unit.test_parse") is None
    assert layer_breaks({"zapstream.kafka_admin": {"schemas.topics"}}) == {
        ("zapstream.kafka_admin", "schemas.topics")
    }
    assert layer_breaks({"zapstream.supervisor.runners": {"ingest.app"}}) == set()
