"""Typed errors. Callers branch on `exc.retryable`, never on message text.

    ZapstreamError                  retryable = False
    ├── RetryableError              retryable = True: try again later (same input)
    │   ├── BrokerUnavailable       the broker is down or slow: refused, timed out, no ack
    │   ├── GraphTransientError     Graph API 5xx, timeouts, connection errors
    │   │   └── GraphRateLimited    130429 / 80007 / 4 / 131056 (with retry_after)
    │   ├── MediaIntegrityError     downloaded media whose sha256 is not Meta's (a bad transfer)
    │   ├── SinkBusy                the DuckDB file is held by another process
    │   ├── SinkStorageUnavailable  DuckDB cannot write now (I/O, memory, a conflict)
    │   └── HelpdeskUnavailable     the helpdesk answered 408/429/5xx, or did not answer
    └── PermanentError              retrying cannot help: reject or dead-letter
        ├── ConfigurationError      a setting is missing or wrong
        │   ├── BrokerConfigurationError   KAFKA_BOOTSTRAP_SERVERS cannot work as set
        │   │   ├── InvalidBrokerAddress   malformed: no port, bad port (also a ValueError)
        │   │   ├── UnknownBrokerHost      the host does not resolve (DNS)
        │   │   └── BrokerAuthenticationFailed   the broker refused TLS or SASL
        │   └── InvalidEmbeddingModel  EMBEDDING_MODEL is not a usable local model folder
        ├── InvalidSignature        X-Hub-Signature-256 missing or wrong
        ├── InvalidPayload          a body that is not JSON, or an event that does not decode
        ├── PayloadTooLarge         a body over WEBHOOK_MAX_BODY_BYTES
        ├── RowNotLoadable          DuckDB or Arrow refuses a row for good (conversion, constraint)
        ├── ReplayRefused           an outbound message marked as a replay's: never sent
        ├── GraphPermanentError     Graph API error that retrying cannot fix
        ├── HelpdeskRefused         the helpdesk refused a notification (another 4xx)
        ├── MediaTooLarge           media over MEDIA_MAX_BYTES: refused, never retried
        └── MediaFetchFailed        a media id given up on (4xx, or retries spent)

Context is ids, codes and addresses, never tokens, passwords or raw phone numbers.
"""

from __future__ import annotations


class ZapstreamError(Exception):
    retryable = False


class RetryableError(ZapstreamError):
    retryable = True


class PermanentError(ZapstreamError):
    retryable = False


class ConfigurationError(PermanentError):
    pass


class BrokerConfigurationError(ConfigurationError):
    """The broker address setting cannot work as it is: retrying will not help."""

    setting = "KAFKA_BOOTSTRAP_SERVERS"

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{self.setting}: {reason}")
        self.address = address
        self.reason = reason


class InvalidBrokerAddress(BrokerConfigurationError, ValueError):
    """Malformed; a ValueError too, so that a pydantic validator may raise it."""


class UnknownBrokerHost(BrokerConfigurationError):
    pass


class BrokerAuthenticationFailed(BrokerConfigurationError):
    pass


class InvalidSignature(PermanentError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid webhook signature: {reason}")
        self.reason = reason


class InvalidPayload(PermanentError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadTooLarge(PermanentError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"body of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class BrokerUnavailable(RetryableError):
    """`reason` is safe to show a caller; `str()` adds the address, for logs."""

    def __init__(
        self, reason: str, *, topic: str | None = None, address: str | None = None
    ) -> None:
        named = address is not None and any(a in reason for a in address.split(","))
        at = f" at {address}" if address and not named else ""
        super().__init__(
            f"broker unavailable{at}: {reason}" + (f" (topic {topic})" if topic else "")
        )
        self.reason = reason
        self.topic = topic
        self.address = address


class SinkBusy(RetryableError):
    pass


class InvalidEmbeddingModel(ConfigurationError):
    """The embedding model folder is missing or unusable; names the path and what is wrong."""

    setting = "EMBEDDING_MODEL"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{self.setting}: {path}: {reason}")
        self.path = path
        self.reason = reason


class SinkStorageUnavailable(RetryableError):
    """A DuckDB load failed for a reason of the moment: the same batch is tried again."""


class RowNotLoadable(PermanentError):
    """A table's rows were refused for a reason that retrying cannot change."""

    def __init__(self, table: str, reason: str) -> None:
        super().__init__(f"{table}: {reason}")
        self.table = table
        self.reason = reason


class ReplayRefused(PermanentError):
    """The sender was handed a message a replay made (`OutboundMessage.replay` set):
    refused, recorded as `refused`, never sent."""

    def __init__(self, outbound_id: str, run_id: str) -> None:
        super().__init__(f"replay {run_id}: outbound {outbound_id} refused (a replay never sends)")
        self.outbound_id = outbound_id
        self.run_id = run_id


class GraphError(ZapstreamError):
    """An error answer (or no answer) from the Graph API for one outbound message."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        outbound_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.subcode = subcode
        self.outbound_id = outbound_id


class GraphTransientError(GraphError, RetryableError):
    pass


class GraphRateLimited(GraphTransientError):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        per_recipient: bool = False,
        **context: int | str | None,
    ) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.per_recipient = per_recipient


class GraphPermanentError(GraphError, PermanentError):
    pass


class HelpdeskError(ZapstreamError):
    """A handoff notification the helpdesk did not take: its status (None: no answer)."""

    def __init__(
        self, reason: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.retry_after = retry_after
        self.attempts = 0
        """Posts made before giving up (set by the poster)."""


class HelpdeskUnavailable(HelpdeskError, RetryableError):
    pass


class HelpdeskRefused(HelpdeskError, PermanentError):
    pass


class MediaTooLarge(PermanentError):
    """Media over MEDIA_MAX_BYTES: stated by Graph (`file_size`) or found while
    downloading. A policy refusal, not a failure: recorded as `refused`."""

    def __init__(self, media_id: str, size: int | None, limit: int) -> None:
        told = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(f"media {media_id}: {told} is over MEDIA_MAX_BYTES ({limit})")
        self.media_id = media_id
        self.size = size
        self.limit = limit


class MediaIntegrityError(RetryableError):
    """The downloaded bytes do not hash to the sha256 Meta gave: a truncated or
    corrupted transfer; a fresh download may succeed."""

    def __init__(self, media_id: str, expected: str, got: str) -> None:
        super().__init__(f"media {media_id}: sha256 {got[:12]}… is not Meta's {expected[:12]}…")
        self.media_id = media_id
        self.expected = expected
        self.got = got


class MediaFetchFailed(PermanentError):
    """A media id given up on: Graph refused it (4xx), or it kept failing for
    MEDIA_FETCH_MAX_ATTEMPTS / MEDIA_FETCH_MAX_ELAPSED_S. Never retried where it is
    raised; `retryable` tells the dead letter which it was (True: retries were spent on
    a transient cause, so replaying it later may succeed)."""

    def __init__(self, media_id: str, reason: str, *, attempts: int, cause_retryable: bool) -> None:
        super().__init__(f"media {media_id}: {reason} (after {attempts} attempt(s))")
        self.media_id = media_id
        self.reason = reason
        self.attempts = attempts
        self.retryable = cause_retryable
