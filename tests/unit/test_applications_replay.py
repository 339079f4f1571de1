"""An Idempotency-Key's replay: the first response's bytes, whichever way they were stored."""

from __future__ import annotations

import json

import pytest

from hirestream.applications.api import replay
from hirestream.shared.web.problems import Problem

FIRST_BODY = (
    b'{"application_id":"65f0c0ffee0000000000abcd","status":"submitted","name":"\xc3\x89mile"}'
)


def stored(body: object) -> dict[str, object]:
    return {
        "_id": "65f0c0ffee0000000000abcd",
        "idempotency": {"key": "k1", "request_hash": "h1", "status": 201, "body": body},
    }


def test_the_stored_bytes_come_back_unchanged() -> None:
    response = replay(stored(FIRST_BODY), "h1")

    assert response.status_code == 201
    assert response.body == FIRST_BODY
    assert response.headers["idempotent-replayed"] == "true"
    assert response.headers["location"] == "/applications/65f0c0ffee0000000000abcd"
    assert response.headers["content-type"] == "application/json"


def test_a_body_stored_as_fields_is_rendered_as_the_service_renders_it() -> None:
    response = replay(stored(json.loads(FIRST_BODY)), "h1")

    assert response.body == FIRST_BODY


def test_another_request_under_the_same_key_is_refused() -> None:
    with pytest.raises(Problem) as refused:
        replay(stored(FIRST_BODY), "another request")
    assert refused.value.status == 422
