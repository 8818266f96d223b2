"""KAFKA_BOOTSTRAP_SERVERS is checked when the settings are read: a malformed address
is a configuration error that names the setting and the entry, never a broker outage."""

from __future__ import annotations

import pytest
import typer
from pydantic import ValidationError

from zapstream.cli import load_settings
from zapstream.errors import ConfigurationError, InvalidBrokerAddress
from zapstream.kafka_address import BrokerAddress, parse_bootstrap
from zapstream.settings import Settings


def test_a_list_of_host_port_pairs_is_parsed_in_order() -> None:
    assert parse_bootstrap("kafka-1:9092, 10.0.0.7:29092,[::1]:9093") == [
        BrokerAddress("kafka-1", 9092),
        BrokerAddress("10.0.0.7", 29092),
        BrokerAddress("::1", 9093),
    ]
    assert str(BrokerAddress("::1", 9093)) == "[::1]:9093"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("localhost", "'localhost' has no port"),
        ("localhost:", "'localhost:' has no port"),
        ("localhost:kafka", "port 'kafka' of 'localhost:kafka' is not a number"),
        ("localhost:0", "port 0 of 'localhost:0' is not between 1 and 65535"),
        ("localhost:70000", "port 70000 of 'localhost:70000' is not between 1 and 65535"),
        (":9092", "':9092' has no host"),
        ("a:1,,b:2", "an empty entry"),
        ("PLAINTEXT://kafka:9092", "write host:port without a scheme"),
        ("kafka 1:9092", "'kafka 1' is not a host name"),
        ("::1:9092", "IPv6 addresses go in brackets"),
    ],
)
def test_a_malformed_address_is_refused_with_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(InvalidBrokerAddress) as caught:
        parse_bootstrap(value)
    assert says in str(caught.value)
    assert str(caught.value).startswith("KAFKA_BOOTSTRAP_SERVERS: ")
    assert isinstance(caught.value, ConfigurationError)
    assert not caught.value.retryable


def test_credentials_in_the_address_are_refused_without_being_repeated() -> None:
    with pytest.raises(InvalidBrokerAddress) as caught:
        parse_bootstrap("alice:s3cret@kafka:9092")
    assert "s3cret" not in str(caught.value)
    assert "credentials" in str(caught.value)


def test_the_settings_refuse_an_address_without_a_port() -> None:
    with pytest.raises(ValidationError, match="'localhost' has no port"):
        Settings(_env_file=None, kafka_bootstrap_servers="localhost")


def test_the_settings_keep_a_normalised_address_list() -> None:
    settings = Settings(_env_file=None, kafka_bootstrap_servers=" a:1 , b:2 ")
    assert settings.kafka_bootstrap_servers == "a:1,b:2"
    assert Settings(_env_file=None, kafka_bootstrap_servers="  ").kafka_bootstrap_servers is None


def test_the_cli_says_what_is_wrong_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost")
    with pytest.raises(typer.Exit) as caught:
        load_settings()
    assert caught.value.exit_code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "configuration error: KAFKA_BOOTSTRAP_SERVERS: 'localhost' has no port;"
        " write host:port, e.g. localhost:9092"
    ]
