"""Idempotency-Key records: the first response's bytes and headers come back, and only for
the same request."""

from __future__ import annotations

import json

import pytest

from hirestream.shared.web.idempotency import (
    derived_id,
    first_response,
    new_id,
    replay,
    request_hash,
)
from hirestream.shared.web.problems import Problem

FIRST_BODY = (
    b'{"application_id":"65f0c0ffee0000000000abcd","status":"submitted","name":"\xc3\x89mile"}'
)
LOCATION = {"Location": "/applications/65f0c0ffee0000000000abcd"}


def test_the_stored_bytes_and_headers_come_back_marked_as_replayed() -> None:
    record = first_response("k1", "h1", status=201, headers=LOCATION, body=FIRST_BODY)
    assert record is not None

    response = replay(record, "h1")

    assert response.status_code == 201
    assert response.body == FIRST_BODY
    assert response.headers["location"] == LOCATION["Location"]
    assert response.headers["idempotent-replayed"] == "true"
    assert response.headers["content-type"] == "application/json"


def test_a_body_stored_as_fields_is_rendered_as_the_services_render_it() -> None:
    record = {"key": "k1", "request_hash": "h1", "status": 201, "body": json.loads(FIRST_BODY)}

    assert replay(record, "h1").body == FIRST_BODY


def test_another_request_under_the_same_key_is_refused() -> None:
    record = first_response("k1", "h1", status=201, headers=LOCATION, body=FIRST_BODY)
    assert record is not None
    with pytest.raises(Problem) as refused:
        replay(record, "another request")
    assert refused.value.status == 422


def test_ids_are_derived_per_caller_and_key() -> None:
    first = new_id("caller-1", "key-1")
    assert new_id("caller-1", "key-1") == first  # a retry finds the first by _id
    assert str(derived_id("caller-1", "key-1")) == first
    assert new_id("caller-2", "key-1") != first  # keys are per caller
    assert new_id("caller-1", "key-2") != first
    assert new_id("caller-1", None) != new_id("caller-1", None)  # without a key: fresh ids


def test_no_record_without_a_key() -> None:
    assert first_response(None, "h1", status=201, headers={}, body=b"{}") is None


def test_the_request_hash_ignores_key_order_only() -> None:
    assert request_hash({"a": 1, "b": [1, 2]}) == request_hash({"b": [1, 2], "a": 1})
    assert request_hash({"a": 1, "b": [1, 2]}) != request_hash({"a": 1, "b": [2, 1]})
