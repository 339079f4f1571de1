"""Tracing in compose and Kubernetes: every service sends its spans to an OpenTelemetry
Collector defined in the same file or render, over the one protocol the services speak, under
its own service name, with a sampler the SDK understands; the collector's configuration wires
defined components only; the network policies let the spans through.

What the services honour is derived from `hirestream.shared.tracing` (support.tracing_variables
and its SUPPORTED_PROTOCOL), not copied. Neither collector runs here (no Docker engine, no
cluster): its configuration is checked as data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider

from hirestream.shared.tracing import SUPPORTED_PROTOCOL, tracing_configured
from tests.deploy.support import (
    ROOT,
    Document,
    Rendered,
    build_overlay,
    service_names,
    tracing_variables,
)

SERVICES = service_names()
COLLECTOR_IMAGE = re.compile(r"otel/opentelemetry-collector(?:-contrib)?:(?P<tag>[^\s@]+)")
# The OTLP/HTTP exporter appends this to OTEL_EXPORTER_OTLP_ENDPOINT, and the collector's
# OTLP receiver serves it by default.
TRACES_PATH = "/v1/traces"
SAMPLER = "parentbased_traceidratio"
# Per overlay: a developer cluster keeps every trace, production one in ten.
SAMPLING_RATIO = {"dev": 1.0, "prod": 0.1}
COMPOSE_RATIO = 1.0
COMPOSE_COLLECTOR_CONFIG = ROOT / "deploy" / "otel" / "collector.yaml"


# ---- what the services are told ----------------------------------------------------------


def otel_env(env: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in env.items() if name.startswith("OTEL_")}


def traces_url(env: Mapping[str, str]) -> str:
    """Where the OTLP/HTTP exporter sends spans, as the SDK derives it from these variables."""
    signal = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if signal:
        return signal
    return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + TRACES_PATH


def check_service_env(where: str, service: str, env: Mapping[str, str], ratio: float) -> None:
    """The tracing variables a service gets: only honoured ones, with values it accepts."""
    unsupported = sorted(set(env) - tracing_variables())
    assert not unsupported, f"{where}: {unsupported} are not read by hirestream.shared.tracing"
    assert tracing_configured(env), f"{where}: no OTLP endpoint, or the SDK is disabled"
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    assert protocol == SUPPORTED_PROTOCOL, f"{where}: the services speak {SUPPORTED_PROTOCOL} only"
    assert env.get("OTEL_SERVICE_NAME") == service, f"{where}: OTEL_SERVICE_NAME"
    assert env.get("OTEL_TRACES_SAMPLER") == SAMPLER, f"{where}: OTEL_TRACES_SAMPLER"
    assert float(env["OTEL_TRACES_SAMPLER_ARG"]) == ratio, f"{where}: OTEL_TRACES_SAMPLER_ARG"
    assert urlsplit(traces_url(env)).path == TRACES_PATH, f"{where}: {traces_url(env)}"


SdkFrom = Callable[[Mapping[str, str]], TracerProvider]


@pytest.fixture
def sdk_from(monkeypatch: pytest.MonkeyPatch) -> SdkFrom:
    """The SDK's own reading of a set of variables: a tracer provider built under them."""

    def build(env: Mapping[str, str]) -> TracerProvider:
        for name in tracing_variables():
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return TracerProvider()

    return build


def check_sdk_reading(provider: TracerProvider, service: str, ratio: float) -> None:
    # The SDK falls back to its default sampler on a value it cannot read: the description
    # tells which one it made.
    description = provider.sampler.get_description()
    assert description.startswith(f"ParentBased{{root:TraceIdRatioBased{{{ratio}}}"), description
    assert provider.resource.attributes[SERVICE_NAME] == service


# ---- the collector's configuration -------------------------------------------------------


def port_of(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def check_collector_config(where: str, config: Document) -> dict[str, int]:
    """A configuration the collector would start with, as far as data can tell; returns the
    ports it listens on (`otlp_http`, `health`)."""
    service = config["service"]
    pipelines: dict[str, Document] = service["pipelines"]
    assert "traces" in pipelines, f"{where}: no traces pipeline"
    for name, pipeline in pipelines.items():
        for part in ("receivers", "processors", "exporters"):
            defined = set(config.get(part) or {})
            for component in pipeline.get(part, []):
                assert component in defined, f"{where}: pipeline {name} uses undefined {component}"
        assert pipeline.get("receivers"), f"{where}: pipeline {name} has no receiver"
        assert pipeline.get("exporters"), f"{where}: pipeline {name} has no exporter"
    for extension in service.get("extensions", []):
        assert extension in (config.get("extensions") or {}), f"{where}: undefined {extension}"

    traces = pipelines["traces"]
    processors = traces.get("processors", [])
    assert any(p.split("/")[0] == "batch" for p in processors), f"{where}: no batch processor"
    limiter = [i for i, p in enumerate(processors) if p.split("/")[0] == "memory_limiter"]
    assert limiter in ([], [0]), f"{where}: memory_limiter must come first"
    assert any(e.split("/")[0] == "debug" for e in traces["exporters"]), f"{where}: no debug"

    # The services speak OTLP over HTTP: an otlp receiver with the http protocol, listening on
    # every interface (its default is localhost, which no other container or pod reaches).
    (receiver,) = [r for r in traces["receivers"] if r.split("/")[0] == "otlp"]
    http = config["receivers"][receiver]["protocols"]["http"]
    assert http["endpoint"].startswith("0.0.0.0:"), f"{where}: {http['endpoint']}"
    assert http.get("traces_url_path", TRACES_PATH) == TRACES_PATH

    health = config["extensions"]["health_check"]
    assert "health_check" in service["extensions"], f"{where}: health_check not enabled"
    assert health["endpoint"].startswith("0.0.0.0:"), f"{where}: {health['endpoint']}"
    return {"otlp_http": port_of(http["endpoint"]), "health": port_of(health["endpoint"])}


# ---- compose ------------------------------------------------------------------------------


def compose_collectors(compose: Document) -> dict[str, Document]:
    return {
        name: spec
        for name, spec in compose["services"].items()
        if COLLECTOR_IMAGE.fullmatch(spec.get("image", ""))
    }


def compose_collector_config(spec: Document) -> Document:
    """The configuration file the collector container is started with, read from the host."""
    (flag,) = [arg for arg in spec["command"] if arg.startswith("--config=")]
    target = flag.removeprefix("--config=")
    mounts = {}
    for volume in spec["volumes"]:
        source, destination, *mode = volume.split(":")
        mounts[destination] = (Path(source), mode)
    assert target in mounts, f"{target} is not mounted into the collector"
    source, mode = mounts[target]
    assert mode == ["ro"], "the configuration is mounted read-only"
    assert source == COMPOSE_COLLECTOR_CONFIG, source
    loaded: Document = yaml.safe_load(source.read_text())
    return loaded


def test_compose_runs_one_pinned_hardened_collector(compose: Document) -> None:
    collectors = compose_collectors(compose)
    assert len(collectors) == 1, f"one collector service: {sorted(collectors)}"
    ((name, spec),) = collectors.items()
    tag = COLLECTOR_IMAGE.fullmatch(spec["image"])["tag"]  # type: ignore[index]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: pin a release, not {tag}"
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    for port in spec.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port
    check_collector_config(str(COMPOSE_COLLECTOR_CONFIG), compose_collector_config(spec))


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_sends_its_traces_to_the_collector(
    compose: Document, service: str, sdk_from: SdkFrom
) -> None:
    spec = compose["services"][service]
    env = otel_env(spec["environment"])
    check_service_env(f"compose {service}", service, env, COMPOSE_RATIO)
    url = urlsplit(traces_url(env))
    collectors = compose_collectors(compose)
    assert url.scheme == "http", "plain HTTP on the compose network"
    assert url.hostname in collectors, f"compose {service}: {url.hostname} is no collector here"
    config = check_collector_config(
        str(COMPOSE_COLLECTOR_CONFIG), compose_collector_config(collectors[url.hostname])
    )
    assert url.port == config["otlp_http"], f"compose {service}: the receiver's port"
    # Started with it (it has no health check to wait for).
    assert spec["depends_on"][url.hostname]["condition"] == "service_started"
    check_sdk_reading(sdk_from(env), service, COMPOSE_RATIO)


# ---- Kubernetes ---------------------------------------------------------------------------


def selects(selector: Document, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a set of labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = (
            expression["key"],
            expression["operator"],
            expression.get("values", []),
        )
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(deployment: Document) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def k8s_collectors(rendered: Rendered) -> list[Document]:
    return [
        deployment
        for deployment in rendered.of_kind("Deployment")
        if any(
            COLLECTOR_IMAGE.fullmatch(container["image"])
            for container in deployment["spec"]["template"]["spec"]["containers"]
        )
    ]


def k8s_collector_config(rendered: Rendered, deployment: Document) -> Document:
    """The configuration the collector container is started with: the ConfigMap key mounted
    where its --config argument points."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (flag,) = [arg for arg in container.get("args", []) if arg.startswith("--config=")]
    path = Path(flag.removeprefix("--config="))
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(path.parent)]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = rendered.named("ConfigMap", volume["configMap"]["name"])
    loaded: Document = yaml.safe_load(config_map["data"][path.name])
    return loaded


def the_collector(rendered: Rendered) -> Document:
    collectors = k8s_collectors(rendered)
    assert len(collectors) == 1, f"{rendered.name}: one collector Deployment"
    return collectors[0]


def test_every_overlay_runs_a_pinned_hardened_probed_collector(rendered: Rendered) -> None:
    deployment = the_collector(rendered)
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    tag = COLLECTOR_IMAGE.fullmatch(container["image"])["tag"]  # type: ignore[index]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: pin a release, not {tag}"

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound]), bound

    ports = check_collector_config(
        f"{rendered.name}/{name}", k8s_collector_config(rendered, deployment)
    )
    named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named_ports.get("otlp-http") == ports["otlp_http"]
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        port = named_ports.get(get["port"], get["port"])
        assert port == ports["health"], f"{probe} asks the health_check extension"

    # hirestream-default-deny covers it too: only its own policy opens it.
    deny = rendered.named("NetworkPolicy", "hirestream-default-deny")["spec"]["podSelector"]
    assert selects(deny, pod_labels(deployment))


def collector_service(rendered: Rendered, host: str) -> Document:
    """The Service a host name in the services' namespace resolves to (`name` or
    `name.<namespace>[.svc...]`)."""
    name, _, rest = host.partition(".")
    service = rendered.named("Service", name)
    namespace = service["metadata"].get("namespace")
    assert rest in ("", namespace, f"{namespace}.svc", f"{namespace}.svc.cluster.local"), host
    return service


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_service_sends_its_traces_to_the_collector(
    rendered: Rendered, service: str, sdk_from: SdkFrom
) -> None:
    where = f"{rendered.name}/{service}"
    assert not otel_env(rendered.env(service)), f"{where}: tracing settings in the ConfigMap"
    env = otel_env(rendered.config(service))
    assert rendered.name in SAMPLING_RATIO, f"say which sampling ratio {rendered.name} keeps"
    ratio = SAMPLING_RATIO[rendered.name]
    check_service_env(where, service, env, ratio)
    url = urlsplit(traces_url(env))
    assert url.scheme == "http", traces_url(env)
    assert url.hostname, traces_url(env)
    target = collector_service(rendered, url.hostname)
    (port,) = [p for p in target["spec"]["ports"] if p["port"] == url.port]
    collector = the_collector(rendered)
    assert selects({"matchLabels": target["spec"]["selector"]}, pod_labels(collector)), (
        f"{where}: Service {target['metadata']['name']} does not select the collector"
    )
    (container,) = collector["spec"]["template"]["spec"]["containers"]
    named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    container_port = named_ports.get(port["targetPort"], port["targetPort"])
    config = check_collector_config(where, k8s_collector_config(rendered, collector))
    assert container_port == config["otlp_http"], f"{where}: the Service misses the receiver"
    check_sdk_reading(sdk_from(env), service, ratio)


def rules_reaching(rules: list[Document], port: int) -> list[Document]:
    return [rule for rule in rules if any(int(p["port"]) == port for p in rule.get("ports", []))]


@pytest.mark.parametrize("service", SERVICES)
def test_network_policies_let_the_spans_through(rendered: Rendered, service: str) -> None:
    where = f"{rendered.name}/{service}"
    collector = the_collector(rendered)
    collector_labels = pod_labels(collector)
    service_labels = pod_labels(rendered.deployment(service))
    url = urlsplit(traces_url(rendered.config(service)))
    # Through the Service: the pods' own port is what a policy sees.
    target = collector_service(rendered, url.hostname or "")
    (service_port,) = [p for p in target["spec"]["ports"] if p["port"] == url.port]
    (container,) = collector["spec"]["template"]["spec"]["containers"]
    named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    pod_port = named_ports.get(service_port["targetPort"], service_port["targetPort"])

    # The service may send there: a rule on that port to the collector's pods in this
    # namespace (a peer without a namespaceSelector).
    egress = rendered.named("NetworkPolicy", service)["spec"]["egress"]
    peers = [peer for rule in rules_reaching(egress, pod_port) for peer in rule.get("to", [])]
    assert any(
        "namespaceSelector" not in peer and selects(peer["podSelector"], collector_labels)
        for peer in peers
        if "podSelector" in peer
    ), f"{where}: no egress to the collector on {pod_port}"

    # The collector takes it: its own policy opens that port to this service's pods, and to
    # nobody in general (every rule names its peers).
    policies = [
        policy
        for policy in rendered.of_kind("NetworkPolicy")
        if policy["spec"].get("ingress")
        and selects(policy["spec"]["podSelector"], collector_labels)
    ]
    assert policies, f"{rendered.name}: no policy opens the collector"
    rules = [rule for policy in policies for rule in policy["spec"]["ingress"]]
    assert all(rule.get("from") for rule in rules), "a collector rule open to everyone"
    opened = [peer for rule in rules_reaching(rules, pod_port) for peer in rule["from"]]
    assert any(
        "namespaceSelector" not in peer and selects(peer.get("podSelector", {}), service_labels)
        for peer in opened
    ), f"{where}: the collector's policy does not admit {service} on {pod_port}"


def test_the_collector_admits_only_the_services(rendered: Rendered) -> None:
    collector_labels = pod_labels(the_collector(rendered))
    for policy in rendered.of_kind("NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], collector_labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                admitted = [
                    deployment["metadata"]["name"]
                    for deployment in rendered.of_kind("Deployment")
                    if selects(peer.get("podSelector", {}), pod_labels(deployment))
                ]
                assert set(admitted) <= set(SERVICES), admitted


def test_production_samples_a_tenth_of_the_traces() -> None:
    prod = build_overlay("prod")
    for service in SERVICES:
        assert float(prod.config(service)["OTEL_TRACES_SAMPLER_ARG"]) == 0.1, service


def test_the_configuration_check_can_fail() -> None:
    """The configuration check can fail: an undefined exporter, a receiver on localhost."""
    config: Document = yaml.safe_load(COMPOSE_COLLECTOR_CONFIG.read_text())
    check_collector_config("as committed", config)
    broken = yaml.safe_load(COMPOSE_COLLECTOR_CONFIG.read_text())
    broken["service"]["pipelines"]["traces"]["exporters"] = ["otlp/missing"]
    with pytest.raises(AssertionError, match="undefined otlp/missing"):
        check_collector_config("broken", broken)
    local = yaml.safe_load(COMPOSE_COLLECTOR_CONFIG.read_text())
    local["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "localhost:4318"
    with pytest.raises(AssertionError, match="localhost:4318"):
        check_collector_config("local", local)
