"""Webhook signatures: `X-Hub-Signature-256` is HMAC-SHA256 of the raw body with the app secret.

Pure: bytes and strings in, `None` or `InvalidSignature` out. The digest must be taken over
the exact bytes Meta sent, before any JSON parsing, because re-serialising changes them.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from zapstream.errors import ConfigurationError, InvalidSignature

_PREFIX = "sha256="
# ASCII-only on purpose: hmac.compare_digest refuses non-ASCII str, so a header with other
# characters must be rejected here as malformed rather than raise TypeError later.
_HEADER = re.compile(r"sha256=[0-9a-fA-F]{64}")


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for `body`: `"sha256=<64 lowercase hex>"`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify_signature(body: bytes, header: str | None, secret: str) -> None:
    """Raise `InvalidSignature` unless `header` is the signature of `body` under `secret`."""
    if not secret:
        # An empty key makes every forged body "valid": refuse to run rather than accept.
        raise ConfigurationError("the WhatsApp app secret is empty")
    if not header:
        raise InvalidSignature("missing X-Hub-Signature-256 header")
    if _HEADER.fullmatch(header) is None:
        raise InvalidSignature("malformed header: expected sha256= and 64 hex digits")
    expected = sign(body, secret).encode()
    # Hex is case-insensitive; compare in constant time so timing leaks nothing of the digest.
    if not hmac.compare_digest(expected, header.lower().encode()):
        raise InvalidSignature("digest does not match the body")
