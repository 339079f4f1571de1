"""The Ingress: every route of the three HTTP APIs reaches its service's API port, and nothing
else does: not /metrics (served on the API port too, and on METRICS_PORT), not the probes, not
the API documents.

The routes are derived from each service's OpenAPI document (support.api_paths), so a new
route without an Ingress path fails here. Matching follows the Ingress v1 rules: `Exact`
compares the whole path, `Prefix` compares whole `/`-separated elements, the longest match
wins; `ImplementationSpecific` (a controller's own pattern language) is refused.
"""

from __future__ import annotations

import pytest

from tests.deploy.support import Document, Rendered, api_paths, build_overlay, service_names

SERVICES = service_names()
# Served by every service, for the cluster only.
INTERNAL_PATHS = ("/metrics", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc")


def elements(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def matches(rule_path: Document, request_path: str) -> bool:
    path: str = rule_path["path"]
    kind = rule_path["pathType"]
    if kind == "Exact":
        return path == request_path
    assert kind == "Prefix", f"pathType {kind}: its meaning depends on the controller"
    prefix = elements(path)
    return elements(request_path)[: len(prefix)] == prefix


def route(ingress: Document, host: str, request_path: str) -> Document | None:
    """The backend a request for host and path reaches, or None."""
    found: list[tuple[int, Document]] = []
    for rule in ingress["spec"]["rules"]:
        if rule.get("host") != host:
            continue
        for rule_path in rule["http"]["paths"]:
            if matches(rule_path, request_path):
                found.append((len(rule_path["path"]), rule_path["backend"]))
    if not found:
        return None
    return max(found, key=lambda item: item[0])[1]


def concrete(template: str) -> str:
    """A request path for an OpenAPI path template: /postings/{posting_id} -> /postings/x1."""
    return "/".join("x1" if part.startswith("{") else part for part in template.split("/"))


def the_ingress(rendered: Rendered) -> Document:
    (ingress,) = rendered.of_kind("Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    return ingress


def hosts(ingress: Document) -> dict[str, set[str]]:
    """Each host and the Services its paths lead to."""
    found: dict[str, set[str]] = {}
    for rule in ingress["spec"]["rules"]:
        assert rule.get("host"), "every rule names its host"
        for rule_path in rule["http"]["paths"]:
            found.setdefault(rule["host"], set()).add(rule_path["backend"]["service"]["name"])
    return found


def host_of(ingress: Document, service: str) -> str:
    (host,) = [host for host, backends in hosts(ingress).items() if backends == {service}]
    return host


def test_a_host_per_service_and_nothing_else(rendered: Rendered) -> None:
    ingress = the_ingress(rendered)
    assert "defaultBackend" not in ingress["spec"], "an unmatched request must reach nothing"
    assert sorted(service for backends in hosts(ingress).values() for service in backends) == (
        sorted(SERVICES)
    )


def test_the_api_routes_are_derived() -> None:
    # Guards the derivation: an empty route list would make the next test pass vacuously.
    for service in SERVICES:
        assert len(api_paths(service) - set(INTERNAL_PATHS)) >= 2, service


@pytest.mark.parametrize("service", SERVICES)
def test_every_api_route_reaches_its_service(rendered: Rendered, service: str) -> None:
    ingress = the_ingress(rendered)
    host = host_of(ingress, service)
    for template in sorted(api_paths(service) - set(INTERNAL_PATHS)):
        backend = route(ingress, host, concrete(template))
        assert backend is not None, f"{service}: {template} is not routed"
        assert backend["service"]["name"] == service, template


@pytest.mark.parametrize("path", INTERNAL_PATHS)
def test_no_internal_path_is_routed(rendered: Rendered, path: str) -> None:
    ingress = the_ingress(rendered)
    for host in hosts(ingress):
        for request in (path, f"{path}/", f"{path}/x1"):
            assert route(ingress, host, request) is None, f"{host}{request} is routed"


@pytest.mark.parametrize("service", SERVICES)
def test_backends_are_the_api_port_never_the_metrics_port(rendered: Rendered, service: str) -> None:
    ingress = the_ingress(rendered)
    config = rendered.config(service)
    api, metrics = int(config["PORT"]), int(config["METRICS_PORT"])
    by_name = {p["name"]: p for p in rendered.named("Service", service)["spec"]["ports"]}
    container = {p["name"]: p["containerPort"] for p in rendered.container(service)["ports"]}
    for rule in ingress["spec"]["rules"]:
        for rule_path in rule["http"]["paths"]:
            backend = rule_path["backend"]["service"]
            if backend["name"] != service:
                continue
            port = backend["port"]
            service_port = by_name[port["name"]] if "name" in port else None
            if service_port is None:
                (service_port,) = [p for p in by_name.values() if p["port"] == port["number"]]
            target = service_port["targetPort"]
            target = container[target] if isinstance(target, str) else target
            assert target == api, f"{rule['host']}{rule_path['path']} -> port {target}"
            assert target != metrics


def test_production_serves_every_host_over_tls() -> None:
    ingress = the_ingress(build_overlay("prod"))
    covered = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    assert covered == set(hosts(ingress))
    assert all(not host.endswith(".localhost") for host in covered)
