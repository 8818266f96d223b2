"""Reading a `/metrics` page in tests: the samples, and sums over label subsets."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from zapstream.metrics import exposition


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def scrape(url: str) -> list[Sample]:
    resp = httpx.get(url, timeout=10)
    resp.raise_for_status()
    assert resp.headers["content-type"].startswith("text/plain"), resp.headers
    return parse(resp.text)


def read(registry: CollectorRegistry) -> list[Sample]:
    return parse(exposition(registry).decode())


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def present(samples: list[Sample], name: str) -> bool:
    return any(s.name == name for s in samples)
