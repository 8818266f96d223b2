"""The worker's Faust app runs `LeanMonitor`: none of Faust's per-record statistics
(its statistics views are off), but what Faust reads back for its own diagnosis."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from faust.types import TP

from processors.app import create_faust_app
from processors.faust_monitor import LeanMonitor
from zapstream.settings import Settings


def test_the_worker_app_uses_the_lean_monitor_and_keeps_faust_s_stats_views_off(
    tmp_path: Path,
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka_bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path,
    )
    app = create_faust_app(settings, app_id="monitor-test", web_port=6066, tables=True)
    assert isinstance(app.monitor, LeanMonitor)
    assert app.conf.web_stats_enabled is False


def test_per_record_hooks_keep_only_the_stream_s_inbound_time() -> None:
    monitor = LeanMonitor()
    tp = TP("zapstream.inbound", 0)
    stream = SimpleNamespace(task_owner=None)
    state = monitor.on_stream_event_in(tp, 7, stream, object())  # type: ignore[arg-type,func-returns-value]
    monitor.on_stream_event_out(tp, 7, stream, object(), state)  # type: ignore[arg-type]
    monitor.on_message_in(tp, 7, SimpleNamespace())  # type: ignore[arg-type]
    monitor.on_send_initiated(None, "t", None, 1, 1)  # type: ignore[arg-type]
    assert tp in monitor.stream_inbound_time  # read by the consumer's idle-stream check
    assert monitor.events_total == 0
    assert monitor.messages_received_total == 0
    assert monitor.messages_sent == 0
