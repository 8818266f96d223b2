"""X-Hub-Signature-256: HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ingest.signature import sign, verify_signature
from zapstream.errors import ConfigurationError, InvalidSignature

SECRET = "app-secret-for-tests"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def test_sign_is_hmac_sha256_of_the_body_with_the_secret() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET) == f"sha256={digest}"


def test_a_valid_signature_passes() -> None:
    verify_signature(BODY, sign(BODY, SECRET), SECRET)


def test_uppercase_hex_is_the_same_signature() -> None:
    header = "sha256=" + sign(BODY, SECRET).removeprefix("sha256=").upper()
    verify_signature(BODY, header, SECRET)


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_header_is_rejected(header: str | None) -> None:
    with pytest.raises(InvalidSignature, match="missing") as caught:
        verify_signature(BODY, header, SECRET)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "header",
    [
        "sha1=" + "a" * 40,  # the old X-Hub-Signature scheme
        "sha256=" + "a" * 63,
        "sha256=" + "a" * 65,
        "sha256=" + "g" * 64,
        "SHA256=" + "a" * 64,
        "a" * 64,
        "sha256= " + "a" * 63,
        "sha256=" + "٣" * 64,  # non-ASCII digits must not reach compare_digest
        "sha256=" + "a" * 64 + "\n",
    ],
)
def test_a_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_signature(BODY, header, SECRET)


def test_a_wrong_digest_is_rejected() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(BODY, "sha256=" + "0" * 64, SECRET)


def test_a_signature_made_with_another_secret_is_rejected() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(BODY, sign(BODY, "someone-elses-secret"), SECRET)


def test_a_body_altered_after_signing_is_rejected() -> None:
    header = sign(BODY, SECRET)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(BODY.replace(b"[]", b"[{}]"), header, SECRET)


def test_re_serialised_json_is_not_the_signed_body() -> None:
    # The digest covers the bytes on the wire: a pretty-printed copy must fail.
    header = sign(BODY, SECRET)
    with pytest.raises(InvalidSignature):
        verify_signature(BODY.replace(b",", b", "), header, SECRET)


def test_an_empty_secret_is_a_configuration_error_not_a_pass() -> None:
    with pytest.raises(ConfigurationError):
        verify_signature(BODY, sign(BODY, ""), "")
