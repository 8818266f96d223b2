"""WORKERS follows the CPUs this process may use: one event loop per worker."""

from __future__ import annotations

import pytest

from zapstream import settings as settings_module
from zapstream.settings import Settings, cpus_allowed


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "expected"),
    [
        (8, None, 8),
        (8, "max 100000", 8),
        (8, "200000 100000", 2),  # docker --cpus 2
        (8, "150000 100000", 2),  # 1.5 CPUs: rounded up
        (8, "50000 100000", 1),
        (1, "400000 100000", 1),
        (4, "garbage", 4),
    ],
)
def test_the_usable_cpus_are_the_affinity_capped_by_the_cgroup_quota(
    affinity: int, cpu_max: str | None, expected: int
) -> None:
    assert cpus_allowed(affinity, cpu_max) == expected


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (16, 2)])
def test_up_starts_two_workers_where_two_cpus_are_usable(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int
) -> None:
    monkeypatch.delenv("WORKERS", raising=False)
    monkeypatch.setattr(settings_module, "usable_cpus", lambda: cpus)
    assert Settings(_env_file=None).workers == workers  # type: ignore[call-arg]


def test_workers_set_by_the_user_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setattr(settings_module, "usable_cpus", lambda: 1)
    assert Settings(_env_file=None).workers == 3  # type: ignore[call-arg]
