"""KAFKA_BOOTSTRAP_SERVERS: `host:port[,host:port...]`, checked when the settings are read.

aiokafka would take `localhost` as `localhost:9092` and a typo as a broker that is
down, retrying for ever; here a malformed entry is an `InvalidBrokerAddress` that
says what is wrong with which entry. IPv6 addresses go in brackets: `[::1]:9092`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zapstream.errors import InvalidBrokerAddress

_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
"""A DNS name or an IPv4 address (both are dot-separated labels)."""
_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+)\]")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _invalid(entry: str, reason: str) -> InvalidBrokerAddress:
    return InvalidBrokerAddress(entry, reason)


def parse_address(entry: str) -> BrokerAddress:
    if "@" in entry:
        # user:password@host: say so without repeating what may be a password
        raise _invalid("", "an entry contains '@': credentials do not belong in the address")
    if "://" in entry:
        raise _invalid(entry, f"{entry!r}: write host:port without a scheme")
    host, sep, port_text = entry.rpartition(":")
    if not sep or not port_text or entry.endswith("]"):
        example = f"{entry.rstrip(':')}:9092"
        raise _invalid(entry, f"{entry!r} has no port; write host:port, e.g. {example}")
    if not host:
        raise _invalid(entry, f"{entry!r} has no host")
    if not (port_text.isascii() and port_text.isdigit()):
        raise _invalid(entry, f"port {port_text!r} of {entry!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise _invalid(entry, f"port {port} of {entry!r} is not between 1 and 65535")
    if ipv6 := _IPV6.fullmatch(host):
        return BrokerAddress(ipv6.group(1), port)
    if ":" in host:
        raise _invalid(entry, f"{entry!r}: IPv6 addresses go in brackets, e.g. [::1]:9092")
    if not _HOST.fullmatch(host):
        raise _invalid(entry, f"{host!r} is not a host name")
    return BrokerAddress(host, port)


def parse_bootstrap(value: str) -> list[BrokerAddress]:
    """Every `host:port` of a comma-separated list, in order; `InvalidBrokerAddress`
    (a `ConfigurationError`) for the first malformed entry."""
    entries = [e.strip() for e in value.strip().split(",")]
    if any(not e for e in entries):
        raise _invalid(value, f"{value!r} has an empty entry (two commas, or one at an end)")
    return [parse_address(e) for e in entries]


def format_bootstrap(addresses: list[BrokerAddress]) -> str:
    return ",".join(str(a) for a in addresses)
