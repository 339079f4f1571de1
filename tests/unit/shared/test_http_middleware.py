"""The correlation and metrics middlewares on a small app (unit level: the same middlewares run
in every service under the integration and e2e tests)."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from hirestream.shared.correlation import current_correlation_id
from hirestream.shared.web.correlation import REQUEST_ID_HEADER, CorrelationMiddleware
from hirestream.shared.web.metrics import install_metrics, serve_metrics
from tests.support.servers import free_port


def app() -> FastAPI:
    application = FastAPI()

    @application.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        return {"thing": thing_id, "seen_as": current_correlation_id()}

    @application.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    # As in the services: correlation outside the routes, metrics outermost.
    application.add_middleware(CorrelationMiddleware)
    install_metrics(application)
    return application


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def counted(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "hirestream_http_requests_total", {"method": "GET", "route": route, "status": status}
    )
    return value or 0.0


async def test_the_callers_request_id_reaches_the_route_and_comes_back() -> None:
    async with client() as http:
        response = await http.get("/things/1", headers={REQUEST_ID_HEADER: "req-abc.1"})
    assert response.headers[REQUEST_ID_HEADER] == "req-abc.1"
    assert response.json()["seen_as"] == "req-abc.1"


async def test_a_traceparent_gives_its_trace_id_and_an_unsafe_id_is_replaced() -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    async with client() as http:
        traced = await http.get(
            "/things/1", headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"}
        )
        unsafe = await http.get("/things/1", headers={REQUEST_ID_HEADER: 'bad id"<x>'})
    assert traced.headers[REQUEST_ID_HEADER] == trace
    assert re.fullmatch(r"req-[0-9a-f]{32}", unsafe.headers[REQUEST_ID_HEADER])
    assert unsafe.json()["seen_as"] == unsafe.headers[REQUEST_ID_HEADER]


async def test_responses_are_counted_by_route_template_and_a_raised_error_as_500() -> None:
    ok_before = counted("/things/{thing_id}", "200")
    broken_before = counted("/broken", "500")
    async with client() as http:
        await http.get("/things/1")
        await http.get("/things/2")
        assert (await http.get("/broken")).status_code == 500
    assert counted("/things/{thing_id}", "200") == ok_before + 2
    assert counted("/broken", "500") == broken_before + 1


def test_metrics_can_be_served_on_a_port_of_their_own() -> None:
    port = free_port()
    stop = serve_metrics(port)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        stop()
    assert response.status_code == 200
    assert "hirestream_http_requests_total" in response.text
