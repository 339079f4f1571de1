"""What the OpenAPI documents say about responses: each route's statuses as problem documents
(`application/problem+json`, schema `Problem`), the headers responses carry, and readable
operation ids.

A route lists the statuses its own checks and use case answer with `route_responses`, which
adds those of the mechanisms in front of it that apply to it: 401 from the token check, 429
from the write budget, 400 from FastAPI's body parsing, 503 when the database is down.
`COMMON_RESPONSES` (the app's `responses`) holds what any request may get whatever the route:
the request guard's 413 and 422, and the catch-all 500. `complete_openapi` adds the shared
schemas, and the problem content to error responses declared elsewhere (`/readyz`'s 503).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.routing import APIRoute

from hirestream.shared.web.correlation import REQUEST_ID_HEADER
from hirestream.shared.web.idempotency import REPLAYED_HEADER
from hirestream.shared.web.problems import PROBLEM_JSON

Responses = dict[int | str, dict[str, Any]]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; members other than these may be added.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": "a URI naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong with this request"},
        "errors": {
            "type": "array",
            "description": "the fields at fault, when the request was invalid",
            "items": {"$ref": "#/components/schemas/InvalidField"},
        },
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
INVALID_FIELD_SCHEMA: dict[str, Any] = {
    "title": "InvalidField",
    "description": "One invalid field; the value sent is never echoed (it may be personal data).",
    "type": "object",
    "properties": {
        "field": {"type": "string", "description": "its dotted path, e.g. `salary.min`"},
        "message": {"type": "string"},
    },
    "required": ["field", "message"],
}
SCHEMAS = {"Problem": PROBLEM_SCHEMA, "InvalidField": INVALID_FIELD_SCHEMA}


def _header(description: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


ETAG = "ETag"
LOCATION = "Location"
REPLAYED = REPLAYED_HEADER
RETRY_AFTER = "Retry-After"
WWW_AUTHENTICATE = "WWW-Authenticate"
HEADERS: dict[str, dict[str, Any]] = {
    ETAG: _header(
        'the posting\'s version as a strong entity tag, `"<version>"`; send it as If-Match to '
        "change the posting",
        {"type": "string", "pattern": '^"[0-9]+"$'},
        required=True,
    ),
    LOCATION: _header("the path of the resource", {"type": "string"}, required=True),
    REPLAYED: _header(
        "`true` when this is the first response again, for a retry with the same "
        "Idempotency-Key; absent otherwise",
        {"type": "string", "enum": ["true"]},
        required=False,
    ),
    RETRY_AFTER: _header(
        "seconds to wait before trying again",
        {"type": "string", "pattern": "^[0-9]+$"},
        required=False,
    ),
    WWW_AUTHENTICATE: _header(
        '`Bearer`, with `error="invalid_token"` when a token was sent',
        {"type": "string"},
        required=True,
    ),
    REQUEST_ID_HEADER: _header(
        "the request's correlation id: the caller's when it sent a safe one, else a new one; "
        "the events the request causes carry it as `correlationid`",
        {"type": "string"},
        required=True,
    ),
}
# The headers a status carries whatever the route that sends it.
_STATUS_HEADERS: dict[int, tuple[str, ...]] = {
    401: (WWW_AUTHENTICATE,),
    429: (RETRY_AFTER,),
    503: (RETRY_AFTER,),
}


def _headers(names: Iterable[str]) -> dict[str, Any]:
    """References to the shared header objects (`components.headers`, see complete_openapi)."""
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def problem(description: str, *headers: str) -> dict[str, Any]:
    """An error response: a problem document, with the headers named."""
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "headers": _headers(headers),
    }


GUARD_422 = (
    "the request guard refused it: JSON nested deeper than MAX_JSON_DEPTH, an object key "
    "starting with `$`, or a query parameter name with `$`, `[` or `]`"
)
COMMON_RESPONSES: Responses = {
    413: problem("the body is larger than MAX_BODY_BYTES (whatever the method)"),
    422: problem(GUARD_422),
    500: problem("an unexpected error; quote the X-Request-ID when reporting it"),
}
_MECHANISMS: dict[int, str] = {
    400: "the body could not be read as text (it is not UTF-8)",
    401: "no bearer token, or one that does not verify (signature, expiry, issuer, audience, "
    "lifetime, claims)",
    429: "too many writes from this client (RATE_LIMIT_WRITES); Retry-After says when to retry",
    503: "the database is unreachable; Retry-After says when to try again",
}


def route_responses(
    refusals: Mapping[int, str] | None = None,
    *,
    success: int = 200,
    success_headers: Iterable[str] = (),
    retry_after: Iterable[int] = (),
    authenticated: bool = True,
    write: bool = False,
    json_body: bool = False,
    database: bool = True,
) -> Responses:
    """A route's `responses`. `refusals`: each status the route's own checks and use case
    answer, and why (a 422 given here is what its validation refuses; the guard's reasons are
    added); `retry_after`: those of them that may carry Retry-After. The flags say which
    mechanisms in front of the route apply: the token check (401), the write budget (429),
    reading a JSON body (400), the database (503)."""
    own = dict(refusals or {})
    unknown = set(success_headers) - set(HEADERS)
    assert not unknown, f"no such shared header: {unknown}"
    responses: Responses = {success: {"headers": _headers(success_headers)}}
    for status, applies in ((400, json_body), (401, authenticated), (429, write), (503, database)):
        if applies:
            responses[status] = problem(_MECHANISMS[status], *_STATUS_HEADERS.get(status, ()))
    own_422 = own.pop(422, None)
    responses[422] = problem(f"{own_422}; or {GUARD_422}" if own_422 else GUARD_422)
    retrying = set(retry_after)
    for status, why in own.items():
        headers = (RETRY_AFTER,) if status in retrying else ()
        responses[status] = problem(why, *headers)
    return dict(sorted(responses.items(), key=lambda item: int(item[0])))


def operation_id(route: APIRoute) -> str:
    """The route function's name (`create_posting`): readable, stable, and what a generated
    client names the method."""
    return route.name


def complete_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Add the shared schemas and headers; give each error response declared without content
    (outside `route_responses`, like `/readyz`'s 503) its problem document and the status's
    headers; give every response the X-Request-ID the correlation middleware sets; list each
    operation's responses by status."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(SCHEMAS)
    components.setdefault("headers", {}).update(HEADERS)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and "content" not in response:
                    headers = _STATUS_HEADERS.get(int(status), ())
                    response.update(problem(response["description"], *headers))
                response.setdefault("headers", {}).update(_headers([REQUEST_ID_HEADER]))
            operation["responses"] = dict(sorted(responses.items()))
    # FastAPI's validation error schemas describe a body no 422 of ours has: drop them unused.
    paths = json.dumps(document.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'/{unused}"' not in paths:
            schemas.pop(unused, None)
    return document
