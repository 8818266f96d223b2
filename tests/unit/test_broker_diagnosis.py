"""Why a broker cannot be reached: a configuration mistake (unknown host, refused
TLS or SASL) or an outage (refused connection, timeout), with the address and the
real reason. The exceptions are the ones aiokafka's connection raises; no socket
is opened here."""

from __future__ import annotations

import socket
import ssl

import pytest
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
)

from zapstream.errors import (
    BrokerAuthenticationFailed,
    BrokerUnavailable,
    ConfigurationError,
    UnknownBrokerHost,
)
from zapstream.kafka_address import BrokerAddress
from zapstream.kafka_diagnosis import explain, verdict

ADDR = BrokerAddress("127.0.0.1", 9999)


def test_an_unknown_host_is_a_configuration_error_naming_the_setting_and_address() -> None:
    error = explain(
        BrokerAddress("kafka.invalid", 9092), socket.gaierror(-2, "Name or service not known")
    )
    assert isinstance(error, UnknownBrokerHost)
    assert isinstance(error, ConfigurationError)
    assert not error.retryable
    assert error.address == "kafka.invalid:9092"
    assert str(error) == (
        "KAFKA_BOOTSTRAP_SERVERS: host 'kafka.invalid' of kafka.invalid:9092 does not"
        " resolve (Name or service not known)"
    )


def test_a_refused_connection_is_an_outage_with_the_address() -> None:
    error = explain(ADDR, ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9999)"))
    assert isinstance(error, BrokerUnavailable)
    assert error.retryable
    assert error.address == "127.0.0.1:9999"
    assert str(error) == "broker unavailable: connection refused to 127.0.0.1:9999"


def test_a_timeout_is_an_outage_with_the_address() -> None:
    error = explain(ADDR, TimeoutError())
    assert isinstance(error, BrokerUnavailable)
    assert "no answer from 127.0.0.1:9999" in str(error)


def test_another_network_error_keeps_its_own_words() -> None:
    error = explain(ADDR, OSError(113, "No route to host"))
    assert isinstance(error, BrokerUnavailable)
    assert str(error) == "broker unavailable: no route to host (127.0.0.1:9999)"


def test_a_listener_that_closes_without_a_kafka_answer_is_an_outage_with_a_hint() -> None:
    error = explain(ADDR, KafkaConnectionError("Connection at 127.0.0.1:9999 closed"))
    assert isinstance(error, BrokerUnavailable)
    assert "127.0.0.1:9999 closed the connection without a Kafka answer" in str(error)
    assert "SSL or SASL" in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        ssl.SSLCertVerificationError(1, "certificate verify failed"),
        SaslAuthenticationFailed(),
        AuthenticationFailedError("Authentication failed"),
    ],
)
def test_a_refused_tls_or_sasl_handshake_is_a_configuration_error(exc: Exception) -> None:
    error = explain(ADDR, exc)
    assert isinstance(error, BrokerAuthenticationFailed)
    assert not error.retryable
    assert str(error).startswith("KAFKA_BOOTSTRAP_SERVERS: 127.0.0.1:9999 refused")


def test_one_answering_broker_is_enough() -> None:
    assert verdict({"a:1": explain(ADDR, TimeoutError()), "b:2": None}) is None


def test_with_no_broker_answering_a_mistake_wins_over_an_outage() -> None:
    unknown = explain(BrokerAddress("nope", 1), socket.gaierror(-2, "Name or service not known"))
    refused = explain(ADDR, ConnectionRefusedError())
    assert verdict({"127.0.0.1:9999": refused, "nope:1": unknown}) is unknown


def test_with_every_broker_down_the_outage_names_every_address() -> None:
    other = BrokerAddress("10.0.0.2", 9092)
    found = verdict(
        {
            "127.0.0.1:9999": explain(ADDR, ConnectionRefusedError()),
            "10.0.0.2:9092": explain(other, TimeoutError()),
        }
    )
    assert isinstance(found, BrokerUnavailable)
    assert "connection refused to 127.0.0.1:9999" in str(found)
    assert "no answer from 10.0.0.2:9092" in str(found)
    assert found.address == "127.0.0.1:9999,10.0.0.2:9092"
