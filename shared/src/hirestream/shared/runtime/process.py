"""What each service's `__main__` does: settings (or one line and exit 2), logging, serve."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from hirestream.shared.logging import configure_logging
from hirestream.shared.settings import ServiceSettings, load_settings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def run_service(
    name: str, settings_class: type[SettingsT], create_app: Callable[[SettingsT], FastAPI]
) -> None:
    settings = load_settings(settings_class)
    configure_logging(name, settings.log_level, settings.log_format)
    serve(create_app(settings), settings)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """HTTP and, through the app's lifespan, the Kafka side in one process. On SIGTERM uvicorn
    stops accepting connections, waits for requests in flight (at most SHUTDOWN_TIMEOUT_S),
    then runs the lifespan's shutdown."""
    uvicorn.run(
        app,
        host="0.0.0.0",  # noqa: S104 - in a container the pod's address is the one to serve on
        port=settings.port,
        log_config=None,  # keep our structlog set-up
        access_log=False,  # the metrics middleware counts requests; no per-request log lines
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        proxy_headers=True,
    )
