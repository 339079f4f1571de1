"""The committed JSON Schemas are the ones the models generate, and they describe real events."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hirestream.shared.events.catalog import EVENT_TYPES, payload_schema, render, schema_path
from hirestream.shared.events.envelope import EventType
from tests.support.factories import posting_closed_event, posting_created_event

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_committed_schema_is_up_to_date(event_type: EventType[Any]) -> None:
    committed = SCHEMAS / schema_path(event_type)
    assert committed.exists(), "run: python -m hirestream.shared.events.catalog --write schemas"
    assert committed.read_text() == render(payload_schema(event_type)), (
        "the payload model changed: regenerate with "
        "python -m hirestream.shared.events.catalog --write schemas"
    )


def test_schemas_accept_real_payloads_and_refuse_broken_ones() -> None:
    created = json.loads(posting_created_event("p1"))
    schema = json.loads((SCHEMAS / "posting.created" / "1.json").read_text())
    jsonschema.validate(created["data"], schema)
    broken = {**created["data"], "version": 0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    closed = json.loads(posting_closed_event("p1", 2))
    jsonschema.validate(
        closed["data"], json.loads((SCHEMAS / "posting.closed" / "1.json").read_text())
    )
