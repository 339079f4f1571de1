"""The statuses the tests see, against the ones each service's OpenAPI document gives.

The in-process test clients (`tests.conftest.client_for`, `http_only_client_for`) hand every
response to `recorder(app)`: it finds the operation the request reached in the app's OpenAPI
document, records what was answered, and fails the request at once, in the test that made it,
when the status is not one the operation documents or a header documented as required is
missing. A request no operation serves (an unknown path, a method the path lacks, /docs,
/metrics) is not an operation's answer: it is neither checked nor recorded.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
from fastapi import FastAPI


@dataclass(frozen=True, order=True)
class Observation:
    service: str  # the app's title, "hirestream postings"
    method: str
    path: str  # the OpenAPI path template
    status: int


class UndocumentedResponse(AssertionError):
    """A route answered what its OpenAPI document does not say it answers."""


# Every response an operation gave in this test session, from any test.
OBSERVED: set[Observation] = set()


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    )


def operation_of(
    document: dict[str, Any], method: str, path: str
) -> tuple[str, dict[str, Any]] | None:
    """The path template and operation that serve `method path`, if any. A literal path wins
    over a template (`/postings` before `/postings/{posting_id}` could never clash anyway, but
    fewer parameters is the router's own tie-break for routes declared in that order)."""
    method = "get" if method.upper() == "HEAD" else method.lower()
    found = [
        (template.count("{"), template, operations[method])
        for template, operations in document["paths"].items()
        if method in operations and _pattern(template).fullmatch(path)
    ]
    if not found:
        return None
    _, template, operation = min(found, key=lambda item: item[0])
    return template, operation


def _resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    reference = item.get("$ref")
    if reference is None:
        return item
    node: Any = document
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    resolved: dict[str, Any] = node
    return resolved


def check(document: dict[str, Any], service: str, response: httpx.Response) -> None:
    """Record `response`; raise UndocumentedResponse if its operation does not document it."""
    request = response.request
    found = operation_of(document, request.method, request.url.path)
    if found is None:
        return
    template, operation = found
    status = response.status_code
    OBSERVED.add(Observation(service, request.method.upper(), template, status))
    where = f"{service}: {request.method} {template} answered {status}"
    documented = operation["responses"].get(str(status))
    if documented is None:
        raise UndocumentedResponse(
            f"{where}, which its OpenAPI document does not list "
            f"(it lists {', '.join(operation['responses'])})"
        )
    # The hook sees the response before its body is read: the header says what it holds.
    content_type = response.headers.get("content-type", "").split(";")[0]
    if content_type and documented.get("content") and content_type not in documented["content"]:
        raise UndocumentedResponse(
            f"{where} as {content_type}; documented: {', '.join(documented['content'])}"
        )
    for name, header in documented.get("headers", {}).items():
        if _resolve(document, header).get("required") and name not in response.headers:
            raise UndocumentedResponse(f"{where} without its required header {name}")


def recorder(app: FastAPI) -> Callable[[httpx.Response], Awaitable[None]]:
    """An httpx response hook checking each response against `app`'s OpenAPI document."""

    async def record(response: httpx.Response) -> None:
        check(app.openapi(), app.title, response)

    return record
