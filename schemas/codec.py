"""The one wire encoding: UTF-8 JSON of `schemas.events` models.

`decode` reads `schema_version` first and upgrades older versions through
`UPGRADES` before validating, so replay of old topics keeps working after a
breaking change. A payload that does not decode raises `InvalidPayload` with the
type and the reason: the caller dead-letters it, it never crashes an agent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from zapstream.errors import InvalidPayload

E = TypeVar("E", bound=BaseModel)

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]

# (record KIND, from_version) -> function producing the next version's dict.
UPGRADES: dict[tuple[str, int], Upgrade] = {}


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json(by_alias=True, exclude_none=False).encode()


def decode(event_type: type[E], data: bytes | str | dict[str, Any]) -> E:
    if not isinstance(data, dict):
        # Fast path: pydantic parses and validates the JSON in one go (several times
        # faster than json.loads + model_validate). Old versions and bad input fall
        # through to the careful path below, which upgrades or explains.
        try:
            event = event_type.model_validate_json(data)
        except (ValidationError, ValueError):
            pass
        else:
            return event
    try:
        doc = data if isinstance(data, dict) else json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidPayload(f"{event_type.__name__}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InvalidPayload(f"{event_type.__name__}: expected a JSON object")
    kind = getattr(event_type, "KIND", event_type.__name__)
    current = event_type.model_fields["schema_version"].default
    version = doc.get("schema_version", 1)
    while isinstance(version, int) and version < current:
        upgrade = UPGRADES.get((kind, version))
        if upgrade is None:
            raise InvalidPayload(f"{kind}: no upgrade from schema_version {version}")
        doc = upgrade(doc)
        version = doc["schema_version"]
    try:
        return event_type.model_validate(doc)
    except ValidationError as exc:
        raise InvalidPayload(f"{kind}: {exc.error_count()} invalid field(s): {exc}") from exc
