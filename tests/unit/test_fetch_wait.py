"""The worker consumer's fetch wait: short while records flow, long while idle."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from processors.faust_transport import _ConsumerThread


def thread_with(fetcher: Any) -> _ConsumerThread:
    thread = _ConsumerThread.__new__(_ConsumerThread)  # no Faust service machinery
    thread.fetch_max_wait_ms = 10
    thread.fetch_idle_wait_ms = 500
    thread._ensure_consumer = lambda: SimpleNamespace(_fetcher=fetcher)  # type: ignore[method-assign]
    return thread


def test_an_idle_consumer_waits_long_and_a_busy_one_short() -> None:
    fetcher = SimpleNamespace(_fetch_max_wait_ms=10)
    thread = thread_with(fetcher)
    thread.pace(idle=True)
    assert fetcher._fetch_max_wait_ms == 500
    thread.pace(idle=True)
    assert fetcher._fetch_max_wait_ms == 500
    thread.pace(idle=False)
    assert fetcher._fetch_max_wait_ms == 10


def test_pacing_before_the_fetcher_exists_waits_for_it() -> None:
    thread = thread_with(None)
    thread.pace(idle=True)  # no fetcher yet: nothing to change, and nothing remembered
    fetcher = SimpleNamespace(_fetch_max_wait_ms=10)
    thread._ensure_consumer = lambda: SimpleNamespace(_fetcher=fetcher)  # type: ignore[method-assign]
    thread.pace(idle=True)
    assert fetcher._fetch_max_wait_ms == 500
