"""Why no broker answers at KAFKA_BOOTSTRAP_SERVERS: a mistake, or an outage.

aiokafka's clients log each failed connection and then raise a bare "Unable to
bootstrap": the reason is lost. `diagnose` connects to every address itself, as the
clients do (`create_conn`, then a metadata request; plaintext, no SASL, like every
zapstream client), and turns what it meets into a typed error with the address:

- a mistake (`BrokerConfigurationError`, not retryable): the host does not resolve,
  or the broker refuses the TLS or SASL handshake;
- an outage (`BrokerUnavailable`, retryable): connection refused, no answer in time,
  another network error, or a listener that closes without a Kafka answer.

One answering address is enough (the clients bootstrap from any). With none, a
mistake wins over an outage: waiting will not fix it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Mapping

from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from zapstream.errors import (
    BrokerAuthenticationFailed,
    BrokerUnavailable,
    ConfigurationError,
    InvalidBrokerAddress,
    UnknownBrokerHost,
    ZapstreamError,
)
from zapstream.kafka_address import BrokerAddress, parse_bootstrap
from zapstream.run_sync import run_sync

log = logging.getLogger(__name__)

AUTH_ERRORS = (
    ssl.SSLError,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)
TIMEOUTS = (TimeoutError, KafkaTimeoutError, RequestTimedOutError)


def _words(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text or type(exc).__name__


def explain(address: BrokerAddress, exc: BaseException) -> ZapstreamError:
    """What connecting to `address` and failing with `exc` means (order matters:
    DNS and TLS errors are OSErrors too)."""
    where = str(address)
    if isinstance(exc, socket.gaierror):
        return UnknownBrokerHost(
            where, f"host {address.host!r} of {where} does not resolve ({_words(exc)})"
        )
    if isinstance(exc, AUTH_ERRORS):
        what = "the TLS handshake" if isinstance(exc, ssl.SSLError) else "authentication"
        return BrokerAuthenticationFailed(where, f"{where} refused {what} ({_words(exc)})")
    if isinstance(exc, ConnectionRefusedError):
        return BrokerUnavailable(f"connection refused to {where}", address=where)
    if isinstance(exc, TIMEOUTS):
        return BrokerUnavailable(f"no answer from {where} in time", address=where)
    if isinstance(exc, KafkaConnectionError):
        return BrokerUnavailable(
            f"{where} closed the connection without a Kafka answer (a Kafka listener?"
            " one that needs SSL or SASL?)",
            address=where,
        )
    words = _words(exc)
    if isinstance(exc, OSError):
        return BrokerUnavailable(f"{words[:1].lower()}{words[1:]} ({where})", address=where)
    return BrokerUnavailable(f"{type(exc).__name__} from {where}: {words}", address=where)


async def probe(address: BrokerAddress, timeout_s: float) -> ZapstreamError | None:
    """None when `address` answers a metadata request within `timeout_s`."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    conn = None
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(
                address.host, address.port, request_timeout_ms=int(timeout_s * 1000)
            )
            await conn.send(MetadataRequest([]))
        return None
    except Exception as exc:
        return explain(address, exc)
    finally:
        if conn is not None:
            conn.close()


def verdict(findings: Mapping[str, ZapstreamError | None]) -> ZapstreamError | None:
    """One problem for the whole address list (keys: addresses, values: `probe`'s)."""
    problems = [p for p in findings.values() if p is not None]
    if len(problems) < len(findings) or not problems:
        return None
    for problem in problems:
        if isinstance(problem, ConfigurationError):
            return problem
    if len(problems) == 1:
        return problems[0]
    reasons = "; ".join(p.reason if isinstance(p, BrokerUnavailable) else str(p) for p in problems)
    return BrokerUnavailable(reasons, address=",".join(findings))


async def diagnose(bootstrap: str, timeout_s: float = 5.0) -> ZapstreamError | None:
    """None when a broker answers; otherwise the mistake or the outage, with addresses."""
    try:
        addresses = parse_bootstrap(bootstrap)
    except InvalidBrokerAddress as exc:
        return exc
    found = await asyncio.gather(*(probe(a, timeout_s) for a in addresses))
    return verdict(dict(zip([str(a) for a in addresses], found, strict=True)))


def check_broker_sync(bootstrap: str, *, fail_on_outage: bool = False) -> None:
    """At a process's start: raise a mistake at once (the process ends with one line);
    an outage is raised too with `fail_on_outage`, else logged (the caller retries)."""
    problem = run_sync(diagnose(bootstrap))
    if problem is None:
        return
    if fail_on_outage or isinstance(problem, ConfigurationError):
        raise problem
    log.warning("%s; starting anyway, retrying until it is back", problem)
