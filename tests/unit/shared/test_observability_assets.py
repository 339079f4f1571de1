"""The dashboard and the alert rules only reference metrics the services really export."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from hirestream.shared.messaging.broker import kafka_metrics

# What every service registers: our metrics, and FastStream's through its middleware.
importlib.import_module("hirestream.shared.metrics")
kafka_metrics()

OBSERVABILITY = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "components" / "monitoring"
METRIC = re.compile(r"\b(hirestream_[a-z_]+)\b")


def exported_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(sample_name(family.name, family.type))
    return names


def sample_name(name: str, kind: str) -> set[str]:
    if kind == "counter":
        return {name, f"{name}_total"}
    if kind == "histogram":
        return {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return {name}


def referenced() -> dict[str, set[str]]:
    rules = yaml.safe_load((OBSERVABILITY / "prometheus-rules.yaml").read_text())
    expressions = {
        f"rule {rule['alert']}": rule["expr"]
        for group in rules["spec"]["groups"]
        for rule in group["rules"]
    }
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    expressions |= {
        f"panel {panel['title']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    return {where: set(METRIC.findall(expr)) for where, expr in expressions.items()}


@pytest.mark.parametrize(("where", "metrics"), sorted(referenced().items()))
def test_every_referenced_metric_is_exported(where: str, metrics: set[str]) -> None:
    assert metrics, f"{where} references no hirestream metric"
    missing = metrics - exported_names()
    assert not missing, f"{where} references metrics no service exports: {sorted(missing)}"


def test_the_alerts_cover_lag_dead_letters_outbox_age_and_errors() -> None:
    all_metrics = set().union(*referenced().values())
    for needed in (
        "hirestream_consumer_lag_records",
        "hirestream_dead_letters_total",
        "hirestream_outbox_oldest_pending_age_seconds",
        "hirestream_http_requests_total",
    ):
        assert needed in all_metrics
