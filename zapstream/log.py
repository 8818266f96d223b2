"""Logging: JSON lines off a TTY, readable lines on one; phone numbers always masked.

Every record passes `MaskingFilter`, which masks anything that looks like a phone
number (8-15 digits) in the message and in the structured `extra` fields, so a
raw number never reaches a log even when a caller forgets. Secrets are SecretStr
and print as `**********`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from datetime import datetime
from typing import Any

import orjson

_PHONE = re.compile(r"(?<![\w.])\+?(\d{8,15})(?![\w.])")
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

message_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "message_id", default=None
)


def mask_phone(number: str) -> str:
    """`mask_phone("5511987654321") == "55*******4321"`: country code and last four stay."""
    digits = number.lstrip("+")
    if len(digits) <= 6:
        return "*" * len(digits)
    return digits[:2] + "*" * (len(digits) - 6) + digits[-4:]


def mask_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(1)), text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = mask_text(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STD_ATTRS:
                setattr(record, key, _mask_value(value))
        if getattr(record, "message_id", None) is None and (mid := message_id_var.get()):
            record.message_id = mid
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STD_ATTRS}


def _utc_ms(created: float) -> str:
    """`datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`."""
    seconds = int(created)
    return "%s.%03d+00:00" % (  # noqa: UP031 - one % is the cheapest here
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)),
        int((created - seconds) * 1000),
    )


def _dumps(doc: dict[str, Any]) -> str:
    """One JSON line: orjson (the worker logs a line per turn; json.dumps took ~5x its
    time), json.dumps for what orjson refuses (a lone surrogate, say)."""
    try:
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(doc, default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _utc_ms(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = mask_text(self.formatException(record.exc_info))
        return _dumps(doc)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname[0]} {record.name}: {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + mask_text(self.formatException(record.exc_info))
        return line


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Install one masked handler on the root logger (idempotent)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_zapstream", False):
            root.removeHandler(old)
    handler._zapstream = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx", "httpcore", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Table recovery after a restart or rebalance is worth seeing (it can take a while).
    logging.getLogger("faust.tables.recovery").setLevel(root.level)


def install_masking_everywhere() -> None:
    """Add the masking filter to every existing handler (Faust installs its own)."""
    f = MaskingFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(x, MaskingFilter) for x in handler.filters):
            handler.addFilter(f)
