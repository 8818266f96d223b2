"""Admin access: the bearer token every admin endpoint needs (`ADMIN_TOKEN`).

`require_admin` is a FastAPI dependency. It compares in constant time
(`hmac.compare_digest`) and never says which part was wrong. With no ADMIN_TOKEN
configured the admin endpoints are closed (403), never open.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request

from zapstream.settings import Settings

BEARER = "bearer "


def token_matches(given: str | None, expected: str) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization") or ""
    if header[: len(BEARER)].lower() != BEARER:
        return None
    return header[len(BEARER) :].strip() or None


def admin_guard(settings: Settings) -> Callable[[Request], None]:
    """A dependency that lets a request through only with `Authorization: Bearer <ADMIN_TOKEN>`."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""

    def require_admin(request: Request) -> None:
        if not expected:
            raise HTTPException(403, detail="admin endpoints are off: set ADMIN_TOKEN")
        if not token_matches(bearer_token(request), expected):
            raise HTTPException(
                401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return require_admin
