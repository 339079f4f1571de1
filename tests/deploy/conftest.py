"""Fixtures of the deployment tests: each rendering is made once per session."""

from __future__ import annotations

import pytest

from tests.deploy.support import Document, Rendered, build_overlay, compose_config, overlays


@pytest.fixture(scope="session", params=overlays())
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """`kustomize build` of each overlay (deploy/k8s/overlays/*)."""
    name: str = request.param
    return build_overlay(name)


@pytest.fixture(scope="session")
def compose() -> Document:
    return compose_config()
