"""The FastAPI application of a service: its routes, and around them what every service has
(auth, problem details, the request guard, correlation ids, metrics, health, the AsyncAPI
document). Its lifespan starts the service's clients, then the service's own background work,
and stops them in reverse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from hirestream.shared.runtime.clients import ServiceClients
from hirestream.shared.tracing import tracing_enabled
from hirestream.shared.web.auth import JwtVerifier
from hirestream.shared.web.correlation import CorrelationMiddleware
from hirestream.shared.web.documents import install_documents
from hirestream.shared.web.guard import RequestGuard
from hirestream.shared.web.health import health_router
from hirestream.shared.web.metrics import install_metrics, serve_metrics
from hirestream.shared.web.openapi import COMMON_RESPONSES, operation_id
from hirestream.shared.web.problems import install_problem_handlers

VERSION = "0.1.0"

log = structlog.get_logger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def every_interval(interval_s: float, job: Callable[[], Awaitable[None]], *, name: str) -> Lifespan:
    """Background work for `service_app`: `job` at start-up, then every `interval_s` while the
    service runs. A run that fails (the database away) is logged as `<name>.failed`, and the
    next one tries again."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def rounds() -> None:
            while True:
                try:
                    await job()
                except Exception as error:
                    log.warning(f"{name}.failed", error=type(error).__name__)
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(rounds(), name=name)
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return lifespan


def service_app(
    clients: ServiceClients,
    routers: Iterable[APIRouter],
    *,
    description: str,
    background: Lifespan | None = None,
) -> FastAPI:
    settings = clients.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_metrics = serve_metrics(settings.metrics_port) if settings.metrics_port else None
        await clients.start()
        try:
            if background is None:
                yield
            else:
                async with background(app):
                    yield
        finally:
            await clients.stop()
            if stop_metrics is not None:
                stop_metrics()

    app = FastAPI(
        title=f"hirestream {clients.name}",
        version=VERSION,
        description=description,
        lifespan=lifespan,
        # What any request may get whatever the route; each route lists its own (openapi.py).
        responses=COMMON_RESPONSES,
        generate_unique_id_function=operation_id,
        # /docs is served by documents.py from local files, never from a CDN; no /redoc.
        docs_url=None,
        redoc_url=None,
    )
    app.state.clients = clients
    app.state.jwt_verifier = verifier = JwtVerifier(
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        jwks_url=settings.jwt_jwks_url,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        max_lifetime_s=settings.jwt_max_lifetime_s,
    )
    install_problem_handlers(app)
    # Added innermost first: metrics see every response (413 and 429 too), and the guard's
    # refusals carry the request's correlation id.
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        write_limit=settings.rate_limit_writes,
        verifier=verifier,
    )
    app.add_middleware(CorrelationMiddleware)
    install_metrics(app)
    app.include_router(
        health_router({"mongodb": clients.check_mongodb, "kafka": clients.check_kafka})
    )
    for router in routers:
        app.include_router(router)
    install_documents(app, clients, version=VERSION)
    if tracing_enabled():
        # Outermost: the request's span covers the guard, auth and the route.
        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return app
