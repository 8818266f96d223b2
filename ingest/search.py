"""`GET /search?q=…&limit=…` on the webhook API (bearer ADMIN_TOKEN): semantic search
over the stored message embeddings (`processors.embeddings.search`). The query is encoded on one
thread of its own (the model loads there on the first search) and DuckDB is read on
another, so the webhook's event loop never waits for either."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from ingest.auth import admin_guard
from processors.embeddings.search import MAX_LIMIT, MAX_QUERY_CHARS, SearchUnavailable, search
from zapstream.errors import ConfigurationError
from zapstream.settings import Settings


def search_router(settings: Settings) -> APIRouter:
    router = APIRouter(dependencies=[Depends(admin_guard(settings))])
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search")

    @router.get("/search")
    async def search_endpoint(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    ) -> Any:
        loop = asyncio.get_running_loop()
        try:
            hits = await loop.run_in_executor(executor, search, settings, q, limit)
        except ValueError as exc:
            return JSONResponse({"error": "bad_query", "detail": str(exc)}, status_code=400)
        except SearchUnavailable as exc:
            return JSONResponse({"error": "unavailable", "detail": str(exc)}, status_code=503)
        except ConfigurationError as exc:
            return JSONResponse({"error": "configuration", "detail": str(exc)}, status_code=503)
        return [h.as_dict() for h in hits]

    return router
