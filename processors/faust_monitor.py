"""`LeanMonitor`: Faust's main sensor without its per-record bookkeeping.

Faust calls its Monitor (the `Monitor` setting, a documented extension point) for
every message fetched, every stream event, every table read and write and every
record sent: counters, per-topic dicts, timestamps and latency deques that feed
Faust's statistics views. This app turns those views off (`web_stats_enabled`
False in `processors.app`) and exports its own Prometheus metrics
(`processors.metrics`), so the bookkeeping was pure cost: ~2 % of the worker's CPU at
200 msgs/s (py-spy, `bench/chain_bench.py --profile worker`), on the event loop that
sets the pace.

Kept: what Faust itself reads back. `stream_inbound_time` feeds the consumer's
"stream idle" diagnosis (`verify_event_path`); commit, end-offset and rebalance
hooks are per batch or rarer and stay as they are.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor


class LeanMonitor(Monitor):
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None
