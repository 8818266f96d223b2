"""Faust apps from the settings: the processing worker and the DuckDB sink.

Both share the consumer tuning (timeouts, fetch wait) and differ in their id (their
consumer group) and in the agents registered on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from processors.faust_monitor import LeanMonitor
from processors.faust_transport import FastFetchApp
from processors.state_dir import claim_state_dir
from zapstream.settings import Settings


def faust_settings(
    settings: Settings,
    *,
    app_id: str,
    web_port: int,
    web: bool,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    """`state_dir`: the folder of an app with tables (see `processors.state_dir`)."""
    bootstrap = settings.require_bootstrap()
    datadir = state_dir if state_dir is not None else settings.data_dir / "faust"
    rocksdb = state_dir is not None and settings.table_store == "rocksdb"
    # Faust's stores, recovered in bulk (processors/table_stores.py)
    store = "zapstream-rocksdb://" if rocksdb else "zapstream-memory://"
    return {
        "id": app_id,
        "broker": [f"kafka://{host}" for host in bootstrap.split(",")],
        "broker_client_id": f"{settings.kafka_client_id}-{app_id}",
        "store": store,
        # Faust keeps per-app files (table state markers, RocksDB tables) in `<datadir>`,
        # by default `<app id>-data` in the current directory: keep them under DATA_DIR.
        "datadir": str(datadir / "{conf.name}-data"),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor,
        "table_standby_replicas": 0,
        "processing_guarantee": "at_least_once",
        "consumer_auto_offset_reset": "earliest",
        "consumer_metadata_max_age_ms": settings.consumer_metadata_max_age_ms,
        "broker_session_timeout": settings.broker_session_timeout_s,
        "broker_heartbeat_interval": settings.broker_heartbeat_interval_s,
        "broker_rebalance_timeout": settings.broker_rebalance_timeout_s,
        "broker_commit_interval": settings.broker_commit_interval_s,
        "broker_request_timeout": max(settings.broker_session_timeout_s * 2, 30.0),
        "producer_linger_ms": settings.producer_linger_ms,
        "producer_acks": -1,
        "web_enabled": web,
        "web_port": web_port,
        "web_bind": "127.0.0.1",
        # the web port serves our pages only (`/metrics`, processors/metrics.py): not
        # Faust's table, router, graph and statistics views (tables hold user state)
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        # ...so Faust's per-record statistics feed nothing: keep only what it reads back
        "Monitor": LeanMonitor,
        "web_in_thread": False,
        "worker_redirect_stdouts": False,
        "autodiscover": False,
        "consumer_group_instance_id": settings.consumer_group_instance_id,
    }


def create_faust_app(
    settings: Settings, *, app_id: str, web_port: int, web: bool = False, tables: bool = False
) -> FastFetchApp:
    """`tables`: the app keeps Faust tables (the worker): it claims its slot's folder
    and uses TABLE_STORE there."""
    base = settings.data_dir / "faust"
    base.mkdir(parents=True, exist_ok=True)
    state_dir = claim_state_dir(base, settings.worker_slot or "worker") if tables else None
    options = faust_settings(
        settings, app_id=app_id, web_port=web_port, web=web, state_dir=state_dir
    )
    app = FastFetchApp(**options)
    app.zapstream_fetch_max_wait_ms = settings.consumer_fetch_max_wait_ms
    app.zapstream_fetch_idle_wait_ms = settings.fetch_idle_wait_ms
    return app
