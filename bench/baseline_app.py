"""The POST benchmark's baseline: the same kind of process as the services (FastAPI on uvicorn
with their settings, PyMongo's async client, the same database server) doing one `insert_one`
per request and nothing else. Same path and body as `POST /postings/{id}/applications`.

`python -m bench.baseline_app --port P --mongodb-url URL --database DB`
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mongodb-url", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    app = create_app(args.mongodb_url, args.database)
    # The services' uvicorn settings (hirestream.shared.runtime.process.serve), on loopback.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
