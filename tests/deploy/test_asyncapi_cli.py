"""Each service's `/asyncapi.json` passes the official AsyncAPI CLI's `asyncapi validate`
(npm's @asyncapi/cli at ASYNCAPI_CLI_VERSION, installed by deploy/tools.sh): no error-level
diagnostic. Warnings and hints are printed but allowed.

The document is the one the route serves, taken from an app whose lifespan is not started:
it needs neither the broker nor the database.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.support import FAKE_SECRETS, run, service_names, settings_class, tool

# The CLI's diagnostic severities (Spectral's): 0 is an error.
ERROR, WARNING = 0, 1


async def _get_document(service: str) -> httpx.Response:
    module = importlib.import_module(f"hirestream.{service}.app")
    app = module.create_app(settings_class(service).model_validate(FAKE_SECRETS))
    # ASGITransport does not run the lifespan: nothing connects to Kafka or MongoDB.
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/asyncapi.json")
    finally:
        await app.state.clients.mongo.close()


@cache
def served_document(service: str) -> str:
    response = asyncio.run(_get_document(service))
    assert response.status_code == 200, response.text
    return response.text


def validate(document: str, directory: Path) -> tuple[int, list[dict[str, Any]], str]:
    """The CLI's exit code, its diagnostics and its whole output."""
    spec = directory / "asyncapi.json"
    spec.write_text(document)
    # Analytics off through a config file of the test's own: the CLI would otherwise write one
    # into the home directory and try to send usage metrics.
    analytics = directory / "analytics.json"
    analytics.write_text(
        json.dumps(
            {"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "hirestream-tests"}
        )
    )
    env = {**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(analytics), "NO_COLOR": "1"}
    command: list[str | Path] = [tool("asyncapi"), "validate", spec]
    result = run([*command, "--diagnostics-format", "json", "--fail-severity", "error"], env=env)
    output = f"{result.stdout}\n{result.stderr}"
    # stdout is the JSON array of diagnostics; a document without any prints none.
    start = result.stdout.find("[")
    diagnostics: list[dict[str, Any]] = (
        json.JSONDecoder().raw_decode(result.stdout[start:])[0] if start >= 0 else []
    )
    return result.returncode, diagnostics, output


def described(diagnostics: list[dict[str, Any]], severity: int) -> list[str]:
    return [
        f"{'/'.join(map(str, d.get('path', []))) or '<root>'}: {d['message']} ({d['code']})"
        for d in diagnostics
        if d.get("severity") == severity
    ]


@pytest.mark.parametrize("service", service_names())
def test_the_served_document_has_no_validation_error(service: str, tmp_path: Path) -> None:
    code, diagnostics, output = validate(served_document(service), tmp_path)
    errors = described(diagnostics, ERROR)
    rejected = f"asyncapi validate rejects {service}'s /asyncapi.json"
    assert not errors, f"{rejected}:\n" + "\n".join(errors)
    assert code == 0, f"{rejected} (exit {code}):\n{output}"
    for warning in described(diagnostics, WARNING):
        print(f"{service}: warning: {warning}")


def test_the_validator_reports_a_broken_document(tmp_path: Path) -> None:
    """The check can fail: an operation pointing at a channel the document lacks is an
    error, with a non-zero exit."""
    broken = json.loads(served_document(service_names()[0]))
    operation = next(iter(broken["operations"].values()))
    operation["channel"] = {"$ref": "#/channels/no-such-topic"}
    code, diagnostics, output = validate(json.dumps(broken), tmp_path)
    assert code != 0, output
    assert any("no-such-topic" in error for error in described(diagnostics, ERROR)), output
