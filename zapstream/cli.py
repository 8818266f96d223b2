"""The `zapstream` command. Settings are built once here and passed down."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from zapstream.errors import BrokerUnavailable, ConfigurationError
from zapstream.settings import Settings

if TYPE_CHECKING:
    from pydantic import ValidationError

    from zapstream.analytics.period import Period

cli = typer.Typer(
    help="zapstream: WhatsApp Cloud API webhooks → Kafka → Faust → replies and DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
webhook_cli = typer.Typer(help="Talk to the running webhook like Meta does.", no_args_is_help=True)
topics_cli = typer.Typer(help="Kafka topics.", no_args_is_help=True)
cli.add_typer(webhook_cli, name="webhook")
cli.add_typer(topics_cli, name="topics")


def load_settings(**overrides: object) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        for line in setting_problems(exc):
            typer.echo(f"configuration error: {line}", err=True)
        raise typer.Exit(2) from exc


SECRETS_USED: dict[str, tuple[str, ...]] = {
    "api": ("WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "ADMIN_TOKEN"),
    "worker": ("WHATSAPP_ACCESS_TOKEN", "HELPDESK_SECRET"),
    "sink": (),
    "sandbox": ("WHATSAPP_APP_SECRET", "WHATSAPP_ACCESS_TOKEN"),
}
"""The secrets each long-running command uses (checked with ENV=production)."""


def secrets_of_up(settings: Settings) -> tuple[str, ...]:
    """`zapstream up` starts the api, the workers, the sink and (without
    GRAPH_API_BASE_URL) the sandbox: it needs what they need."""
    started = ["api", "worker", "sink"] + ([] if settings.graph_api_base_url else ["sandbox"])
    return tuple(dict.fromkeys(name for cmd in started for name in SECRETS_USED[cmd]))


def require_production_ready(settings: Settings, command: str, uses: tuple[str, ...]) -> None:
    """With ENV=production, refuse to start (code 2, one line naming the secrets that
    are missing or still development defaults; never their values)."""
    problems = settings.production_problems(uses)
    if problems:
        typer.echo(
            f"configuration error: ENV=production: zapstream {command} refuses to start: "
            + "; ".join(problems),
            err=True,
        )
        raise typer.Exit(2)


def settings_for(command: str, **overrides: object) -> Settings:
    """The settings of a long-running command, checked for production."""
    settings = load_settings(**overrides)
    uses = secrets_of_up(settings) if command == "up" else SECRETS_USED.get(command, ())
    require_production_ready(settings, command, uses)
    return settings


def setting_problems(exc: ValidationError) -> list[str]:
    """One line per wrong setting, named as its environment variable."""
    lines = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigurationError):
            lines.append(str(cause))  # names the variable itself
            continue
        name = ".".join(str(part) for part in error["loc"]).upper()
        lines.append(f"{name}: {error['msg']}")
    return lines


@contextlib.contextmanager
def exit_on_broker_errors() -> Iterator[None]:
    """A configuration mistake ends the command with one line and code 2; a broker
    that is down, with one line and code 1. No traceback for either."""
    try:
        yield
    except ConfigurationError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except BrokerUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@cli.command()
def up(
    broker: Annotated[
        str | None, typer.Option(help="Embedded broker to start: tansu or kafka (default: BROKER).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processing worker processes (default: WORKERS).")
    ] = None,
) -> None:
    """Run the whole pipeline: broker, sandbox, sink, worker(s), webhook API."""
    from zapstream.log import configure_logging
    from zapstream.supervisor.supervisor import Supervisor

    settings = settings_for("up", broker=broker, workers=workers)
    configure_logging(settings.log_level, "console")
    kind = settings.broker
    if kind == "kafka" and not settings.kafka_bootstrap_servers:
        from zapstream.brokers.java import java_available

        if not java_available():
            typer.echo("no JDK found: falling back to the embedded Tansu broker", err=True)
            kind = "tansu"
    raise typer.Exit(Supervisor(settings, broker_kind=kind).run_forever())


@cli.command()
def api() -> None:
    """Run the webhook API (needs KAFKA_BOOTSTRAP_SERVERS)."""
    from zapstream.supervisor.runners import run_api

    with exit_on_broker_errors():
        run_api(settings_for("api"))


@cli.command()
def worker() -> None:
    """Run one processing worker (Faust). Start as many as you like."""
    from zapstream.supervisor.runners import run_worker

    with exit_on_broker_errors():
        run_worker(settings_for("worker"))


@cli.command()
def embedder() -> None:
    """Run one embedder: embedding requests in, vectors out (EMBEDDING_* settings)."""
    from zapstream.supervisor.runners import run_embedder

    with exit_on_broker_errors():
        run_embedder(load_settings())


@cli.command()
def sink() -> None:
    """Run the DuckDB sink: exactly one per DuckDB file."""
    from sinks.service import run_sink

    with exit_on_broker_errors():
        run_sink(settings_for("sink"))


@cli.command()
def sandbox() -> None:
    """Run the local Cloud API sandbox (a stand-in for graph.facebook.com)."""
    from zapstream.sandbox.app import run_sandbox

    run_sandbox(settings_for("sandbox"))


@cli.command()
def broker(kind: Annotated[str, typer.Option(help="tansu or kafka")] = "tansu") -> None:
    """Run an embedded broker in the foreground and create the topics."""
    import signal
    import time

    from schemas.topics import all_topic_specs
    from zapstream.brokers.factory import make_broker
    from zapstream.kafka_admin import ensure_topics_sync

    settings = load_settings()
    b = make_broker(kind, settings.data_dir, settings.kafka_version)
    bootstrap = b.start()
    ensure_topics_sync(bootstrap, all_topic_specs(settings), settings.topic_replication_factor)
    typer.echo(f"{b.name} broker at {bootstrap} (pid {b.pid}); KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


@topics_cli.command("create")
def topics_create() -> None:
    """Create every topic the stack uses (idempotent)."""
    from schemas.topics import all_topic_specs
    from zapstream.kafka_admin import ensure_topics_sync
    from zapstream.kafka_diagnosis import check_broker_sync

    settings = load_settings()
    with exit_on_broker_errors():
        bootstrap = settings.require_bootstrap()
        check_broker_sync(bootstrap, fail_on_outage=True)
        created = ensure_topics_sync(
            bootstrap, all_topic_specs(settings), settings.topic_replication_factor
        )
    typer.echo(f"created: {', '.join(created) if created else 'nothing (all exist)'}")


@topics_cli.command("list")
def topics_list() -> None:
    """Print the topics the stack uses with their partition counts."""
    from schemas.topics import all_topic_specs

    for spec in all_topic_specs(load_settings()):
        flag = "\tcompacted" if spec.compacted else ""
        typer.echo(f"{spec.name}\t{spec.partitions}{flag}")


@webhook_cli.command("send")
def webhook_send(
    text: Annotated[str, typer.Argument(help="The message text")],
    from_: Annotated[
        str, typer.Option("--from", help="The user's wa_id (phone number)")
    ] = "5511987654321",
    name: Annotated[str, typer.Option(help="Profile name")] = "Maria",
    url: Annotated[
        str | None, typer.Option(help="Webhook URL (default: from the settings)")
    ] = None,
    message_id: Annotated[
        str | None, typer.Option(help="wamid to use (repeat one to test dedupe)")
    ] = None,
) -> None:
    """Post a correctly signed text-message webhook, as Meta would."""
    import httpx

    from ingest.samples import dumps, text_webhook
    from ingest.signature import sign

    settings = load_settings()
    payload = text_webhook(
        text,
        wa_id=from_,
        profile_name=name,
        message_id=message_id,
        phone_number_id=settings.whatsapp_phone_number_id,
    )
    body = dumps(payload)
    target = url or settings.webhook_url
    headers = {
        "content-type": "application/json",
        "x-hub-signature-256": sign(body, settings.whatsapp_app_secret.get_secret_value()),
    }
    try:
        resp = httpx.post(target, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        typer.echo(f"could not reach {target}: {exc} (is `zapstream up` running?)", err=True)
        raise typer.Exit(1) from exc
    mid = payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    typer.echo(f"{resp.status_code} {resp.text}  message_id={mid}")
    raise typer.Exit(0 if resp.status_code == 200 else 1)


@cli.command()
def db(
    sql: Annotated[str, typer.Argument(help='Read-only SQL, e.g. "SELECT * FROM messages"')],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Query the DuckDB file, through the running sink when it holds the file."""
    from zapstream.db_query import QueryFailed, query

    settings = load_settings()
    try:
        columns, rows = query(settings, sql)
    except QueryFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(
            json.dumps(
                [dict(zip(columns, r, strict=True)) for r in rows], default=str, ensure_ascii=False
            )
        )
        return
    from zapstream.db_query import format_table

    typer.echo(format_table(columns, rows))


@cli.command()
def search(
    text: Annotated[str, typer.Argument(help="What to look for (a sentence)")],
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many hits")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of hits")] = False,
) -> None:
    """Messages closest in meaning to TEXT (cosine similarity of their embeddings)."""
    from processors.embeddings.search import SearchUnavailable
    from processors.embeddings.search import search as run_search

    settings = load_settings()
    try:
        with exit_on_broker_errors():
            hits = run_search(settings, text, limit)
    except (SearchUnavailable, ValueError) as exc:
        typer.echo(f"search: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps([h.as_dict() for h in hits], ensure_ascii=False))
        return
    from zapstream.db_query import format_table

    rows = [(f"{h.score:.3f}", h.at or "", h.user_id, h.text, h.message_id) for h in hits]
    typer.echo(format_table(["score", "at", "user", "text", "message_id"], rows, max_width=60))


def _period(from_: str | None, to: str | None) -> Period:
    from datetime import UTC, datetime

    from zapstream.analytics.period import InvalidPeriod, parse_period

    try:
        return parse_period(from_, to, datetime.now(UTC))
    except InvalidPeriod as exc:
        typer.echo(f"error: {exc.reason}", err=True)
        raise typer.Exit(2) from exc


FromOpt = Annotated[
    str | None,
    typer.Option("--from", help="Start: ISO time (UTC unless a zone is given) or a span back, e.g. 7d."),
]
ToOpt = Annotated[str | None, typer.Option("--to", help="End (excluded): ISO time or a span back; default now.")]


@cli.command()
def report(
    from_: FromOpt = None,
    to: ToOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
) -> None:
    """Conversation figures for a period (default: the last 7 days), from DuckDB."""
    from zapstream.analytics.render import format_report
    from zapstream.analytics.report import build_report
    from zapstream.analytics.source import reader
    from zapstream.db_query import QueryFailed

    settings = load_settings()
    period = _period(from_, to)
    try:
        with reader(settings) as r:
            figures = build_report(r.query, period)
    except QueryFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(figures, ensure_ascii=False, indent=2) if as_json else format_report(figures))


@cli.command()
def export(
    table: Annotated[str | None, typer.Argument(help="The table to export (see docs/analytics.md)")] = None,
    out: Annotated[str, typer.Option("--out", help="FILE.parquet, or a folder with --all")] = "",
    all_tables: Annotated[bool, typer.Option("--all", help="Every table, one FILE per table, into --out")] = False,
    from_: FromOpt = None,
    to: ToOpt = None,
) -> None:
    """Write a table (or every table) of the DuckDB file to Parquet."""
    from pathlib import Path

    from zapstream.analytics.export import ExportFailed, export_all, export_table
    from zapstream.analytics.source import reader
    from zapstream.db_query import QueryFailed

    if not out or (table is None) == (not all_tables):
        typer.echo("usage: zapstream export TABLE --out FILE.parquet | zapstream export --all --out DIR", err=True)
        raise typer.Exit(2)
    period = _period(from_, to) if from_ or to else None
    settings = load_settings()
    try:
        with reader(settings) as r:
            if all_tables:
                done = export_all(r, Path(out), period)
            else:
                assert table is not None
                done = [export_table(r, table, Path(out), period)]
    except ExportFailed as exc:
        typer.echo(f"error: {exc.reason}", err=True)
        raise typer.Exit(2) from exc
    except QueryFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for item in done:
        typer.echo(f"{item.table}: {item.rows} rows -> {item.path}")


def main() -> None:
    cli(prog_name="zapstream")


if __name__ == "__main__":
    main()
