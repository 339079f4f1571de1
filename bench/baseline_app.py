"""The bare baseline endpoint: the same kind of process as the services (FastAPI served by
uvicorn with the services' settings, PyMongo's async client, the same database server), doing
one `insert_one` per POST and nothing else: no auth, no validation model, no outbox, no
middleware. `python -m bench.baseline_app --port P --mongodb-url URL --database DB`.

It takes the same path and body as `POST /postings/{posting_id}/applications`, so the load
tool sends both exactly the same requests.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse
from pymongo import AsyncMongoClient


def create_app(mongodb_url: str, database: str) -> FastAPI:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    collection = client[database]["items"]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await client.admin.command("ping")
        yield
        await client.close()

    app = FastAPI(title="bench baseline", lifespan=lifespan)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/postings/{posting_id}/applications", status_code=201)
    async def insert(posting_id: str, body: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        result = await collection.insert_one({**body, "posting_id": posting_id})
        return JSONResponse({"id": str(result.inserted_id)}, status_code=201)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bare insert endpoint (benchmark baseline)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mongodb-url", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args(argv)
    # The services' own uvicorn settings (hirestream.shared.runtime.serve), on loopback.
    uvicorn.run(
        create_app(args.mongodb_url, args.database),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
