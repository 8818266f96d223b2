"""Builders of real-shaped Cloud API webhook bodies: for `zapstream webhook send`,
the tests and the benchmarks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def new_wamid() -> str:
    return "wamid.ZS" + uuid.uuid4().hex.upper()


def text_webhook(
    text: str,
    *,
    wa_id: str = "5511987654321",
    phone_number_id: str = "100000000000001",
    display_phone_number: str = "15550001111",
    message_id: str | None = None,
    profile_name: str = "Maria",
    timestamp: int | None = None,
) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "200000000000001",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": display_phone_number,
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": profile_name}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": message_id or new_wamid(),
                                    "timestamp": str(
                                        timestamp if timestamp is not None else int(time.time())
                                    ),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
