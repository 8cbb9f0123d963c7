"""The floor for bench/rest_hot_reads.py: a bare Starlette app running the hot reads' SQL.

    DATABASE_URL=... .venv/bin/python bench/rest_floor.py --port N [--pool-min 2 --pool-max 10]

Same stack as ours below the framework (uvicorn with its defaults for HTTP, Starlette, our
``persistence.db.Database`` pool with the same sizes, codecs and release), the same queries
(``persistence.files`` / ``persistence.projects`` constants) under the same RLS settings
(``Database.as_user``: role ``authenticated`` and the JWT claims, exactly as our request
path sets them). What it leaves out is everything else a real request does: no token, no
membership check, no api_logs, no validation or response models. It trusts the user id
given on its command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from persistence.db import Database
from persistence.files import LIST_FILES, SELECT_FILE_CONTENT
from persistence.projects import SELECT_PROJECT

# Ours records last_accessed_at inside its access check (server/access.py); the floor has no
# check, so it runs the update on its own, outside a transaction (one statement).
TOUCH_PROJECT = "update public.projects set last_accessed_at = now() where id = $1"
TREE_PAGE = 50  # the API's default page (server.api.pagination.DEFAULT_LIMIT)


def json_response(value: Any) -> Response:
    return Response(json.dumps(value, default=str), media_type="application/json")


def build(dsn: str, user_id: str, pool_min: int, pool_max: int) -> Starlette:
    state: dict[str, Database] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["db"] = await Database.connect(dsn, min_size=pool_min, max_size=pool_max)
        yield
        await state["db"].close()

    async def file_content(request: Request) -> Response:
        async with state["db"].as_user(user_id) as conn:
            row = await conn.fetchrow(SELECT_FILE_CONTENT, uuid.UUID(request.path_params["id"]))
        return json_response(dict(row)) if row else Response(status_code=404)

    async def tree(request: Request) -> Response:
        async with state["db"].as_user(user_id) as conn:
            rows = await conn.fetch(
                LIST_FILES, uuid.UUID(request.path_params["id"]), False, None, None,
                TREE_PAGE + 1,
            )
        return json_response({"items": [dict(r) for r in rows[:TREE_PAGE]],
                              "next_cursor": None})

    async def project_open(request: Request) -> Response:
        project_id = uuid.UUID(request.path_params["id"])
        async with state["db"].acquire() as conn:
            await conn.execute(TOUCH_PROJECT, project_id)
        async with state["db"].as_user(user_id) as conn:
            row = await conn.fetchrow(SELECT_PROJECT, project_id)
        return json_response(dict(row)) if row else Response(status_code=404)

    async def healthz(request: Request) -> Response:
        return Response("ok")

    return Starlette(
        routes=[
            Route("/api/v1/files/{id}", file_content),
            Route("/api/v1/projects/{id}/files", tree),
            Route("/api/v1/projects/{id}", project_open),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--pool-min", type=int, default=2)
    parser.add_argument("--pool-max", type=int, default=10)
    args = parser.parse_args()
    app = build(os.environ["DATABASE_URL"], args.user, args.pool_min, args.pool_max)
    # uvicorn.run as ours (server/__main__.py): its loop (uvloop when installed) and parser.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
