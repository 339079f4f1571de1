"""What every service's HTTP tests check the same way: problem documents."""

from __future__ import annotations

from typing import Any

import httpx


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem document with this status; returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def problem_fields(response: httpx.Response) -> set[str]:
    """The fields a 422 names."""
    return {error["field"] for error in assert_problem(response, 422)["errors"]}
