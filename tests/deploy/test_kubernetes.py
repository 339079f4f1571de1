"""The Kubernetes manifests: each overlay builds with kustomize, passes kubernetes-validate
--strict, and every service's pod is probed, bounded, locked down, spread (prod), scraped on a
port of its own and reachable only as its network policy says.

kubernetes-validate carries the schemas of Kubernetes' own kinds only. Strimzi's KafkaTopic and
KafkaUser and prometheus-operator's ServiceMonitor and PrometheusRule are custom resources: the
validator warns that it has no schema for them and checks nothing. `test_kubernetes_validate_strict`
therefore requires that these are the *only* kinds left unchecked, and their fields are checked
here and in test_topics.py, test_kafka_acls.py and test_alert_rules.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.support import (
    ROOT,
    Document,
    Rendered,
    build_overlay,
    run,
    service_names,
    tool,
    walk,
)

SERVICES = service_names()
# Validated by the tests named above, not by kubernetes-validate.
CUSTOM_KINDS = {"KafkaTopic", "KafkaUser", "ServiceMonitor", "PrometheusRule"}
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def test_kubernetes_validate_strict(rendered: Rendered, tmp_path: Path) -> None:
    manifest = tmp_path / f"{rendered.name}.yaml"
    manifest.write_text(rendered.text)
    result = run([tool("kubernetes-validate"), "--strict", manifest])
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"kubernetes-validate --strict {rendered.name}:\n{output}"
    unchecked = re.findall(r"Couldn't find schema for kind (\S+)", output)
    assert set(unchecked) <= CUSTOM_KINDS, f"kinds left unvalidated: {set(unchecked)}"
    assert len(unchecked) == sum(len(rendered.of_kind(kind)) for kind in CUSTOM_KINDS)
    passed = re.findall(r"passed for resource", output)
    assert len(passed) == len(rendered.documents) - len(unchecked), output


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_objects(rendered: Rendered, service: str) -> None:
    for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"):
        rendered.named(kind, service)
    pod = rendered.deployment(service)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == service
    assert pod["automountServiceAccountToken"] is False
    config = rendered.config(service)
    ports = {"http": int(config["PORT"]), "metrics": int(config["METRICS_PORT"])}
    assert ports["http"] != ports["metrics"], "/metrics must have a port of its own"
    container_ports = {p["name"]: p["containerPort"] for p in rendered.container(service)["ports"]}
    assert container_ports == ports
    service_ports = rendered.named("Service", service)["spec"]["ports"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service_ports} == {
        name: (port, name) for name, port in ports.items()
    }


def test_no_secret_is_committed(rendered: Rendered) -> None:
    assert rendered.of_kind("Secret") == []


def test_every_referenced_secret_is_documented(rendered: Rendered) -> None:
    referenced = {
        node["secretKeyRef"]["name"]
        for node in walk(rendered.documents)
        if isinstance(node, dict) and "secretKeyRef" in node
    }
    assert referenced, "the services take their secrets from Secrets"
    # Strimzi's User Operator makes a Secret named like each KafkaUser (test_kafka_acls.py).
    made_by_strimzi = {user["metadata"]["name"] for user in rendered.of_kind("KafkaUser")}
    doc = DEPLOYMENT_DOC.read_text()
    for name in sorted(referenced - made_by_strimzi):
        assert re.search(rf"create secret generic {re.escape(name)}\b", doc), (
            f"{DEPLOYMENT_DOC}: say how to create the Secret {name}"
        )
    # Mounted Secrets (the Kafka cluster CA) and the Ingress's TLS Secret: named in the doc.
    others = {
        node["secret"]["secretName"]
        for node in walk(rendered.documents)
        if isinstance(node, dict) and "secretName" in node.get("secret", {})
    } | {
        tls["secretName"]
        for ingress in rendered.of_kind("Ingress")
        for tls in ingress["spec"].get("tls", [])
    }
    for name in sorted(others):
        assert f"`{name}`" in doc, f"{DEPLOYMENT_DOC}: say where the Secret {name} comes from"


@pytest.mark.parametrize("service", SERVICES)
def test_probes(rendered: Rendered, service: str) -> None:
    container = rendered.container(service)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # Start-up waits up to 120 s for Kafka and MongoDB before the port opens.
    assert startup["periodSeconds"] * startup["failureThreshold"] > 120


@pytest.mark.parametrize("service", SERVICES)
def test_resources_are_requested_and_limited(rendered: Rendered, service: str) -> None:
    resources = rendered.container(service)["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), f"{service}: {bound}"


@pytest.mark.parametrize("service", SERVICES)
def test_security_context(rendered: Rendered, service: str) -> None:
    pod = rendered.deployment(service)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = rendered.container(service)["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container.get("privileged", False) is False
    # The one writable place: /tmp on an emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in rendered.container(service)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("service", SERVICES)
def test_grace_period_outlasts_the_graceful_shutdown(rendered: Rendered, service: str) -> None:
    pod = rendered.deployment(service)["spec"]["template"]["spec"]
    shutdown = float(rendered.config(service)["SHUTDOWN_TIMEOUT_S"])
    pre_stop = rendered.container(service).get("lifecycle", {}).get("preStop", {})
    command = pre_stop.get("exec", {}).get("command", [])
    sleep = float(command[1]) if command[:1] == ["sleep"] else 0.0
    assert pod["terminationGracePeriodSeconds"] > sleep + shutdown


@pytest.mark.parametrize("service", SERVICES)
def test_prometheus_scrapes_the_metrics_port(rendered: Rendered, service: str) -> None:
    # A ServiceMonitor (components/monitoring, in every overlay) on the Service port `metrics`,
    # which the container serves on METRICS_PORT; nothing is scraped through the API port.
    monitor = rendered.named("ServiceMonitor", service)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        svc
        for svc in rendered.of_kind("Service")
        if selector.items() <= svc["metadata"]["labels"].items()
    ]
    assert [svc["metadata"]["name"] for svc in selected] == [service]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert "namespaceSelector" not in monitor["spec"], "the overlay's namespace only"
    metadata = rendered.deployment(service)["spec"]["template"]["metadata"]
    assert not any(key.startswith("prometheus.io/") for key in metadata.get("annotations", {}))


def test_every_overlay_includes_the_monitoring_component(rendered: Rendered) -> None:
    assert {m["metadata"]["name"] for m in rendered.of_kind("ServiceMonitor")} == set(SERVICES)
    assert [rule["metadata"]["name"] for rule in rendered.of_kind("PrometheusRule")] == [
        "hirestream"
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_tagged_by_the_overlay(rendered: Rendered, service: str) -> None:
    image = rendered.container(service)["image"]
    name, _, tag = image.rpartition(":")
    assert name.endswith(f"hirestream/{service}"), image
    assert tag not in {"", "latest"}, image


@pytest.mark.parametrize("service", SERVICES)
def test_replicas_are_fixed_or_autoscaled_never_both(rendered: Rendered, service: str) -> None:
    autoscalers = [
        hpa
        for hpa in rendered.of_kind("HorizontalPodAutoscaler")
        if hpa["spec"]["scaleTargetRef"]["name"] == service
    ]
    deployment = rendered.deployment(service)
    if autoscalers:
        # A replicas field would fight the autoscaler on every apply.
        assert "replicas" not in deployment["spec"]
        (hpa,) = autoscalers
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    else:
        assert deployment["spec"]["replicas"] >= 1


def test_production_autoscales_every_service() -> None:
    prod = build_overlay("prod")
    targets = {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in prod.of_kind("HorizontalPodAutoscaler")
    }
    assert targets == set(SERVICES)
    for hpa in prod.of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 2, "a drain must leave a pod serving"


@pytest.mark.parametrize("service", SERVICES)
def test_disruption_budget(rendered: Rendered, service: str) -> None:
    spec = rendered.named("PodDisruptionBudget", service)["spec"]
    assert spec["selector"] == rendered.deployment(service)["spec"]["selector"]
    assert "maxUnavailable" in spec or "minAvailable" in spec


@pytest.mark.parametrize("service", SERVICES)
def test_production_spreads_replicas_over_zones_and_nodes(service: str) -> None:
    prod = build_overlay("prod")
    pod = prod.deployment(service)["spec"]["template"]
    constraints = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
    assert set(constraints) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in constraints.values():
        assert constraint["maxSkew"] == 1
        labels = constraint["labelSelector"]["matchLabels"]
        assert labels == {"app.kubernetes.io/name": service}, "spread this service's pods"
        assert labels.items() <= pod["metadata"]["labels"].items()
    # One per zone is a rule; across nodes a preference, so a drain can still place the pod.
    assert constraints["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "ScheduleAnyway"


# ---- network policies ----------------------------------------------------------------------


def allowed_ports(rules: list[Document]) -> set[tuple[str, int]]:
    return {
        (port.get("protocol", "TCP"), int(port["port"]))
        for rule in rules
        for port in rule.get("ports", [])
    }


def kafka_port(rendered: Rendered, service: str) -> int:
    bootstrap = rendered.config(service)["KAFKA_BOOTSTRAP_SERVERS"]
    ports = {int(address.rpartition(":")[2]) for address in bootstrap.split(",")}
    assert len(ports) == 1, bootstrap
    return ports.pop()


def peers_by_port(rules: list[Document]) -> dict[int, list[Document]]:
    """Who may reach each port: the `from` peers of the rules naming it (one rule per port)."""
    found: dict[int, list[Document]] = {}
    for rule in rules:
        for port in rule.get("ports", []):
            assert int(port["port"]) not in found, f"port {port['port']} in two rules"
            found[int(port["port"])] = rule.get("from", [])
    return found


def test_default_deny_covers_every_service_pod(rendered: Rendered) -> None:
    deny = [
        policy
        for policy in rendered.of_kind("NetworkPolicy")
        if set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not policy["spec"].get("ingress")
        and not policy["spec"].get("egress")
    ]
    assert len(deny) == 1, "one default-deny policy"
    selector = deny[0]["spec"]["podSelector"].get("matchLabels", {})
    for service in SERVICES:
        labels = rendered.deployment(service)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"default deny does not select {service}"


@pytest.mark.parametrize("service", SERVICES)
def test_network_policy_allows_what_the_service_needs(rendered: Rendered, service: str) -> None:
    policy = rendered.named("NetworkPolicy", service)["spec"]
    labels = rendered.deployment(service)["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    config = rendered.config(service)
    api, metrics = int(config["PORT"]), int(config["METRICS_PORT"])
    assert allowed_ports(policy["ingress"]) == {("TCP", api), ("TCP", metrics)}
    # The API from the ingress controller only, /metrics from Prometheus only: never from
    # anywhere (a rule without `from`) and never the one through the other's rule.
    peers = peers_by_port(policy["ingress"])
    assert [p["podSelector"]["matchLabels"] for p in peers[api]] == [
        {"app.kubernetes.io/name": "ingress-nginx"}
    ]
    assert [p["podSelector"]["matchLabels"] for p in peers[metrics]] == [
        {"app.kubernetes.io/name": "prometheus"}
    ]
    for peer in peers[api] + peers[metrics]:
        assert "kubernetes.io/metadata.name" in peer["namespaceSelector"]["matchLabels"]
    egress = allowed_ports(policy["egress"])
    needed = {("UDP", 53), ("TCP", 53), ("TCP", kafka_port(rendered, service)), ("TCP", 27017)}
    if config.get("JWT_JWKS_URL", "").startswith("https://"):
        needed.add(("TCP", 443))  # the identity provider's key set
    if service == "notifications":
        # Email to the relay, and webhooks over https.
        needed |= {("TCP", int(config["SMTP_PORT"])), ("TCP", 443)}
    traces = config.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or config.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if traces:
        # Spans to the collector (components/tracing; test_tracing.py checks the peers).
        needed.add(("TCP", urlsplit(traces).port or 80))
    assert needed <= egress, f"{service}: egress lacks {needed - egress}"
    assert egress - needed == set(), f"{service}: egress beyond what it needs"


def test_webhook_egress_excludes_private_networks(rendered: Rendered) -> None:
    policy = rendered.named("NetworkPolicy", "notifications")["spec"]
    https = [rule for rule in policy["egress"] if ("TCP", 443) in allowed_ports([rule])]
    assert len(https) == 1
    blocks = [peer["ipBlock"] for peer in https[0]["to"]]
    v4 = next(block for block in blocks if block["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])
