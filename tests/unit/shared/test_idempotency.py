"""Idempotency-Key: ids derived per caller and key, and the first response only for the same
request."""

from __future__ import annotations

import pytest

from hirestream.shared.service_layer.errors import Conflict, InvalidRequest
from hirestream.shared.service_layer.idempotency import (
    IdempotentRequest,
    derived_id,
    new_id,
    request_hash,
)

FIRST = b'{"application_id":"65f0c0ffee0000000000abcd","name":"\xc3\x89mile"}'


def test_the_first_response_comes_back_for_the_same_request() -> None:
    request = IdempotentRequest("cand-1", "k1", request_hash({"a": 1}))
    assert request.first_response(request.record(FIRST)) == FIRST


def test_another_request_under_the_same_key_is_refused_naming_the_header() -> None:
    first = IdempotentRequest("cand-1", "k1", request_hash({"a": 1}))
    other = IdempotentRequest("cand-1", "k1", request_hash({"a": 2}))
    with pytest.raises(InvalidRequest) as refused:
        other.first_response(first.record(FIRST))
    assert refused.value.extensions["errors"][0]["field"] == "Idempotency-Key"


def test_a_record_erased_since_leaves_nothing_to_replay() -> None:
    with pytest.raises(Conflict):
        IdempotentRequest("cand-1", "k1", "h").first_response(None)


def test_ids_are_derived_per_caller_and_key() -> None:
    first = IdempotentRequest("caller-1", "key-1", "h")
    assert first.aggregate_id == derived_id("caller-1", "key-1")  # a retry finds the first
    assert new_id(first) == first.aggregate_id
    assert IdempotentRequest("caller-2", "key-1", "h").aggregate_id != first.aggregate_id
    assert IdempotentRequest("caller-1", "key-2", "h").aggregate_id != first.aggregate_id
    assert len(first.aggregate_id) == 24
    assert new_id(None) != new_id(None)  # without a key: fresh ids


def test_the_request_hash_ignores_key_order_only() -> None:
    assert request_hash({"a": 1, "b": [1, 2]}) == request_hash({"b": [1, 2], "a": 1})
    assert request_hash({"a": 1, "b": [1, 2]}) != request_hash({"a": 1, "b": [2, 1]})
