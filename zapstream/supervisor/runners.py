"""Entry points of the long-running processes: webhook API and worker (the sink's is
`sinks.service.run_sink`, which needs no Faust).

Each builds what it needs from the one Settings object it is handed, and first
checks KAFKA_BOOTSTRAP_SERVERS: a mistake (unknown host, refused TLS/SASL) ends it
at once with a `ConfigurationError`; a broker that is merely down is logged, and the
process starts and keeps retrying.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from typing import Any

import faust

from zapstream.broker_defaults import resolve_broker_defaults
from zapstream.errors import ConfigurationError
from zapstream.kafka_diagnosis import check_broker_sync
from zapstream.log import configure_logging, install_masking_everywhere
from zapstream.log_throttle import throttle_library_logs
from zapstream.settings import Settings

log = logging.getLogger("zapstream")


def run_api(settings: Settings) -> None:
    import uvicorn

    from ingest.app import WebhookFastPath, create_app

    configure_logging(settings.log_level, settings.log_format)
    throttle_library_logs()  # aiokafka logs every failed reconnection
    check_broker_sync(settings.require_bootstrap())
    app = create_app(settings)
    uvicorn.run(
        WebhookFastPath(app),
        host=settings.webhook_host,
        port=settings.webhook_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


def _dump_state(app: Any) -> None:
    """SIGUSR1: print every asyncio task's stack and the consumer's per-partition
    state (what is this worker waiting for?)."""
    try:
        tasks = asyncio.all_tasks(asyncio.get_event_loop())
    except RuntimeError:
        return
    print(f"--- {len(tasks)} asyncio tasks ---", file=sys.stderr)
    for task in tasks:
        task.print_stack(file=sys.stderr)
    describe = getattr(app.consumer, "describe", None)
    if describe is not None:
        print(f"--- consumer ---\n{describe()}", file=sys.stderr)
    sys.stderr.flush()


def use_event_loop(settings: Settings) -> None:
    """uvloop makes each hop cheaper (aiokafka and httpx spend most of their time in
    the loop). Set before Faust creates its loop; EVENT_LOOP=asyncio opts out."""
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _Worker(faust.Worker):  # type: ignore[misc]
    def _on_sigusr1(self) -> None:
        # mode's own SIGUSR1 handler prints thread stacks only; ours tells more
        _dump_state(self.app)


def _run_faust(app: faust.App, settings: Settings) -> None:
    worker = _Worker(
        app, loglevel=settings.log_level, override_logging=False, redirect_stdouts=False, quiet=True
    )
    install_masking_everywhere()
    throttle_library_logs()
    worker.execute_from_commandline()


def require_free_port(setting: str, port: int, host: str = "127.0.0.1") -> None:
    """One clear line instead of Faust's traceback when the worker's web port is
    taken (by another worker on this host, say)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"{setting}: {host}:{port} is in use ({exc.strerror}); give each worker "
                "on a host its own port (`zapstream up` does)"
            ) from exc


def run_worker(settings: Settings) -> None:
    from processors import metrics
    from processors.agents import register_agents
    from processors.app import create_faust_app
    from processors.handoff.agent import register_handoff

    configure_logging(settings.log_level, settings.log_format)
    check_broker_sync(settings.require_bootstrap())
    require_free_port("WORKER_WEB_PORT", settings.worker_web_port)
    use_event_loop(settings)
    settings = resolve_broker_defaults(settings)
    app = create_faust_app(
        settings,
        app_id=settings.app_id,
        web_port=settings.worker_web_port,
        web=True,
        tables=True,
    )
    register_handoff(register_agents(app, settings))  # handoff: commands, notifier
    metrics.expose(app)  # GET /metrics on WORKER_WEB_PORT
    _run_faust(app, settings)


def run_embedder(settings: Settings) -> None:
    """One embedder process (`processors.embedder`). The model folder is checked first
    (an unusable EMBEDDING_MODEL is a ConfigurationError: one line, exit code 2), then
    the model is loaded (built first, the first time) before the process joins the
    consumer group."""
    from processors.embeddings.model import offline

    offline()  # HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE before anything imports transformers
    from processors.embedder import (
        Embedder,
        build_encoder,
        check_model,
        create_embedder_app,
        lower_priority,
        register_embedder,
    )

    configure_logging(settings.log_level, settings.log_format)
    model = check_model(settings)
    encoder = build_encoder(settings)
    check_broker_sync(settings.require_bootstrap())
    port = settings.embedding_web_port
    if port is not None:
        require_free_port("EMBEDDING_WEB_PORT", port)
    # Loaded before joining the consumer group: the first start builds the int8 file
    # (the torch import and export hold the GIL for many seconds, which starved
    # Faust's consumer thread of heartbeats when done inside the agent).
    # The lowest CPU priority first, before the model is built or loaded (measured: the
    # first start's int8 build at normal priority took 92 % of a core and pushed the
    # replies' p95 from 0.2 s to 6 s on two cores), and before any thread starts: the
    # compute threads inherit it.
    priority = lower_priority()
    started = time.monotonic()
    encoder.warm_up()  # InvalidEmbeddingModel here: one line, exit code 2
    log.info(
        "embedding model ready",
        extra={
            "model": model.name,
            "backend": encoder.backend,
            "dim": model.dim,
            "seconds": round(time.monotonic() - started, 1),
            "cpu_priority": priority,
        },
    )
    use_event_loop(settings)
    settings = resolve_broker_defaults(settings, tables=False)
    app = create_embedder_app(settings)
    register_embedder(app, settings, Embedder(encoder, model))
    if port is not None:
        from processors import metrics

        metrics.expose(app)  # GET /metrics on EMBEDDING_WEB_PORT
    _run_faust(app, settings)
