"""The API documents a service serves, with no token and no network: `/openapi.json` rendered by
Swagger UI at `/docs`, `/asyncapi.json` rendered by the AsyncAPI viewer at `/asyncapi`.

The viewers' files come from pinned npm packages, copied into `static/` by
`shared/web-assets/build.sh` (at image build time, and by ./dev.sh locally). Pages never fall
back to a CDN: without the build, `/docs` and `/asyncapi` answer 500 saying what to run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from hirestream.shared.runtime.asyncapi import asyncapi_document
from hirestream.shared.runtime.clients import ServiceClients
from hirestream.shared.web.openapi import complete_openapi
from hirestream.shared.web.problems import Problem, problem_response

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
ASSETS_URL = "/docs/assets"
SWAGGER_UI_FILES = (
    "swagger-ui/swagger-ui-bundle.js",
    "swagger-ui/swagger-ui.css",
    "swagger-ui/favicon-32x32.png",
)
ASYNCAPI_FILES = ("asyncapi/index.js", "asyncapi/default.min.css")
BUILD_COMMAND = "shared/web-assets/build.sh"


def missing_assets() -> list[str]:
    return [
        name for name in (*SWAGGER_UI_FILES, *ASYNCAPI_FILES) if not (STATIC_DIR / name).is_file()
    ]


def _not_built() -> Response | None:
    missing = missing_assets()
    if not missing:
        return None
    detail = f"the API document viewers are not built ({missing[0]} missing): run {BUILD_COMMAND}"
    log.error("docs.assets_missing", detail=detail)
    return problem_response(Problem(500, detail))


def asyncapi_page(title: str, document_url: str) -> str:
    """The AsyncAPI React component's standalone bundle, rendering the document at
    `document_url`."""
    config = {
        "schema": {"url": document_url, "options": {"method": "GET"}},
        "config": {
            "show": {
                "sidebar": True,
                "info": True,
                "servers": True,
                "operations": True,
                "messages": True,
                "schemas": True,
                "errors": True,
            }
        },
    }
    # Escaped for a <script> element: no "</" can close it early.
    config_js = json.dumps(config).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{ASSETS_URL}/asyncapi/default.min.css">
<link rel="icon" href="{ASSETS_URL}/swagger-ui/favicon-32x32.png">
</head>
<body>
<div id="asyncapi"></div>
<script src="{ASSETS_URL}/asyncapi/index.js"></script>
<script>
AsyncApiStandalone.render({config_js}, document.getElementById("asyncapi"));
</script>
</body>
</html>
"""


def install_documents(app: FastAPI, clients: ServiceClients, *, version: str) -> None:
    """Serve the documents and the viewers' files, and complete the generated OpenAPI."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_openapi(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # check_dir=False: the app starts without the build; the pages then say what is missing.
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC_DIR, check_dir=False), name="docs-assets")
    title = f"hirestream {clients.name}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        if (refusal := _not_built()) is not None:
            return refusal
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            # No online validator badge: the page must not reach out.
            swagger_ui_parameters={"validatorUrl": None, "displayOperationId": True},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(asyncapi_document(clients.broker, name=clients.name, version=version))

    @app.get("/asyncapi", include_in_schema=False)
    async def asyncapi_viewer() -> Response:
        if (refusal := _not_built()) is not None:
            return refusal
        return HTMLResponse(asyncapi_page(f"{title} events", "/asyncapi.json"))
