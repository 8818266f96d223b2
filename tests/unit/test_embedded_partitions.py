"""How many partitions `zapstream up` gives the topics of the broker it starts."""

from __future__ import annotations

import io
from typing import Any

import pytest

from zapstream.settings import Settings
from zapstream.supervisor.supervisor import Supervisor, with_embedded_partitions


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, 2),  # one worker: two partitions, not eight
        ({"workers": 3}, 3),  # each worker gets a partition
        ({"embedding_workers": 4}, 4),  # and each embedder
        ({"topic_partitions": 8}, 8),  # a value the user set is kept
        ({"topic_partitions": 1}, 1),
    ],
)
def test_the_embedded_tansu_gets_as_many_partitions_as_consumers(
    kw: dict[str, Any], expected: int
) -> None:
    assert with_embedded_partitions(settings(**kw), "tansu").topic_partitions == expected


def test_apache_kafka_keeps_the_setting() -> None:
    assert with_embedded_partitions(settings(), "kafka").topic_partitions == 8


def test_a_partition_count_from_the_environment_is_the_user_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOPIC_PARTITIONS", "6")
    assert with_embedded_partitions(settings(), "tansu").topic_partitions == 6


def test_every_child_is_told_the_count_the_topics_were_made_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOPIC_PARTITIONS", raising=False)
    up = Supervisor(settings(), out=io.StringIO(), broker_kind="tansu")
    up.settings = with_embedded_partitions(up.settings, "tansu")
    assert up.child_env("127.0.0.1:9092")["TOPIC_PARTITIONS"] == "2"
