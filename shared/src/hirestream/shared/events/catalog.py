"""Every event type hirestream publishes, and their JSON Schemas.

`python -m hirestream.shared.events.catalog --write schemas` regenerates the committed schema
files from the pydantic models; a unit test fails when a model changed and the files did not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
)
from hirestream.shared.events.envelope import EventType
from hirestream.shared.events.notifications import NOTIFICATION_DELIVERED
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.events.privacy import CANDIDATE_ERASED, CANDIDATE_ERASURE_REQUESTED

EVENT_TYPES: tuple[EventType[Any], ...] = (
    POSTING_CREATED,
    POSTING_UPDATED,
    POSTING_CLOSED,
    APPLICATION_SUBMITTED,
    APPLICATION_STATUS_CHANGED,
    NOTIFICATION_DELIVERED,
    CANDIDATE_ERASURE_REQUESTED,
    CANDIDATE_ERASED,
)

BY_NAME = {event_type.name: event_type for event_type in EVENT_TYPES}
_BY_PAYLOAD: dict[type[BaseModel], EventType[Any]] = {
    event_type.payload: event_type for event_type in EVENT_TYPES
}


def event_type_of(payload: BaseModel) -> EventType[Any]:
    """The event type whose `data` this payload is: each payload model belongs to one."""
    return _BY_PAYLOAD[type(payload)]


def schema_path(event_type: EventType[Any]) -> Path:
    """Where a schema lives, relative to the schemas folder: `<type>/<version>.json`, the same
    path as the tail of the event's `dataschema` URL."""
    return Path(event_type.name) / f"{event_type.version}.json"


def payload_schema(event_type: EventType[Any]) -> dict[str, Any]:
    """The JSON Schema of an event type's `data`, as it is written on the wire."""
    schema = event_type.payload.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": event_type.dataschema,
        **schema,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the JSON Schemas of every event payload")
    parser.add_argument("--write", type=Path, required=True, help="the schemas folder")
    args = parser.parse_args(argv)
    for event_type in EVENT_TYPES:
        target = args.write / schema_path(event_type)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(payload_schema(event_type)))
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
