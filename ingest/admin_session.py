"""Browser sessions for the admin pages (`/dashboard`): a signed cookie, never the token.

A browser cannot send a bearer header on a page load, so the login form takes
ADMIN_TOKEN once (compared in constant time, `ingest.auth.token_matches`) and sets a
cookie holding `v1.<expires>.<nonce>.<signature>`: the signature is an HMAC-SHA256 of
the rest under a key derived from ADMIN_TOKEN, so the cookie proves the token was
known without containing it, expires by itself after SESSION_TTL_S, and every cookie
stops working when ADMIN_TOKEN changes. The cookie is HttpOnly, SameSite=Strict,
limited to /dashboard, and Secure on HTTPS (a proxy's X-Forwarded-Proto counts) and
always with ENV=production.

Who may see an admin page (`Access`): with ADMIN_TOKEN set, a request with the bearer
token or a valid cookie; with ENV=production and no ADMIN_TOKEN, nobody (403); in
development with no ADMIN_TOKEN, everybody (a local stack needs no login).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time

from fastapi import Request, Response

from ingest.auth import bearer_token, token_matches
from zapstream.settings import Settings

COOKIE = "zapstream_dashboard"
COOKIE_PATH = "/dashboard"
SESSION_TTL_S = 12 * 3600
"""A login lasts this long; then the form asks for the token again."""
_VERSION = "v1"


class Access(enum.Enum):
    ALLOWED = "allowed"
    LOGIN = "login"
    """Not (or no longer) logged in: 401 and the login form."""
    CLOSED = "closed"
    """ENV=production without ADMIN_TOKEN: nobody may log in (403)."""


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self._token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._production = settings.env == "production"
        self._key = hmac.new(
            self._token.encode(), b"zapstream admin session " + _VERSION.encode(), hashlib.sha256
        ).digest()

    @property
    def open(self) -> bool:
        """Development without ADMIN_TOKEN: the admin pages need no login."""
        return not self._token and not self._production

    def access(self, request: Request) -> Access:
        if self.open:
            return Access.ALLOWED
        if not self._token:
            return Access.CLOSED
        if token_matches(bearer_token(request), self._token):
            return Access.ALLOWED
        if self.valid(request.cookies.get(COOKIE)):
            return Access.ALLOWED
        return Access.LOGIN

    def token_ok(self, given: str | None) -> bool:
        return bool(self._token) and token_matches(given, self._token)

    def issue(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + SESSION_TTL_S)
        body = f"{_VERSION}.{expires}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}"

    def valid(self, value: str | None, now: float | None = None) -> bool:
        if not value or not self._token:
            return False
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(self._sign(body).encode(), signature.encode()):
            return False
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit():
            return False
        return int(parts[1]) > (time.time() if now is None else now)

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def set_cookie(self, request: Request, response: Response) -> None:
        response.set_cookie(
            COOKIE,
            self.issue(),
            max_age=SESSION_TTL_S,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=self._production or _https(request),
        )

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=self._production or _https(request),
        )


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"
