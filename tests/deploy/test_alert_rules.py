"""The alert rules (components/monitoring/prometheus-rules.yaml): valid for Prometheus
(`promtool check rules` on the groups each overlay renders), behaving as intended (`promtool
test rules` with rules-test.yaml, which makes every alert fire and stay quiet), and each
linked to a section of docs/runbook.md that exists.

promtool comes from Debian's `prometheus` package, found like every tool here (.stack/cache/bin
or PATH); a missing promtool fails these tests.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import K8S, ROOT, Document, Rendered, load_yaml, run, tool

MONITORING = K8S / "components" / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
RULES_TEST = MONITORING / "rules-test.yaml"
RUNBOOK_ENV = MONITORING / "runbook.env"
RUNBOOK = ROOT / "docs" / "runbook.md"
# The name rules-test.yaml gives the rule file it tests.
EXTRACTED = "prometheus-rules.rules.yaml"


def alerts(groups: list[Document]) -> dict[str, Document]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def rendered_groups(rendered: Rendered) -> list[Document]:
    (rule,) = rendered.of_kind("PrometheusRule")
    groups: list[Document] = rule["spec"]["groups"]
    return groups


def source_groups() -> list[Document]:
    groups: list[Document] = load_yaml(RULES)["spec"]["groups"]
    return groups


def write_rule_file(groups: list[Document], path: Path) -> Path:
    """A plain Prometheus rule file: the PrometheusRule's spec, which is what the operator loads."""
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def runbook_url() -> str:
    for line in RUNBOOK_ENV.read_text().splitlines():
        if line.startswith("RUNBOOK_URL="):
            return line.partition("=")[2]
    pytest.fail(f"{RUNBOOK_ENV}: no RUNBOOK_URL line")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    """The anchors of docs/runbook.md's headings (a `#` line inside a code block is none)."""
    text = re.sub(r"^```.*?^```", "", RUNBOOK.read_text(), flags=re.MULTILINE | re.DOTALL)
    headings = re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
    return {github_anchor(heading) for heading in headings}


def test_promtool_check_rules(rendered: Rendered, tmp_path: Path) -> None:
    rules = write_rule_file(rendered_groups(rendered), tmp_path / "rules.yaml")
    result = run([tool("promtool"), "check", "rules", rules])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alerts(rendered_groups(rendered)))} rules found" in result.stdout


def test_promtool_test_rules(tmp_path: Path) -> None:
    write_rule_file(source_groups(), tmp_path / EXTRACTED)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = run([tool("promtool"), "test", "rules", tmp_path / RULES_TEST.name])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_make_every_alert_fire_and_stay_quiet() -> None:
    test_file: dict[str, Any] = yaml.safe_load(RULES_TEST.read_text())
    assert test_file["rule_files"] == [EXTRACTED]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in test_file["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    every = set(alerts(source_groups()))
    assert sorted(every - fired) == [], "alerts no test makes fire"
    assert sorted(every - quiet) == [], "alerts no test sees quiet"


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for name, rule in alerts(source_groups()).items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert "runbook" not in rule["annotations"], f"{name}: runbook_url, not runbook"


def test_every_alert_links_to_its_runbook_section(rendered: Rendered) -> None:
    base = runbook_url()
    assert re.fullmatch(r"https://[^#\s]+/docs/runbook\.md", base), base
    anchors = runbook_anchors()
    for name, rule in alerts(rendered_groups(rendered)).items():
        url: str = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == base, f"{name}: {url} is not under RUNBOOK_URL (runbook.env)"
        assert anchor == github_anchor(name), f"{name}: link to its own section"
        assert anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}"


def test_the_anchor_rule_matches_github() -> None:
    assert github_anchor("Replay a dead-letter topic") == "replay-a-dead-letter-topic"
    assert github_anchor("HirestreamOutboxStuck") == "hirestreamoutboxstuck"
    assert github_anchor("Kafka: consumer groups") == "kafka-consumer-groups"
    # Headings only: the runbook's code blocks are full of `#` comments.
    assert "deploy" in runbook_anchors()
    assert not any(anchor.startswith("kubernetes-inside") for anchor in runbook_anchors())
