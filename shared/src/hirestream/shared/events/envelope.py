"""The CloudEvents 1.0 envelope (structured JSON mode) every hirestream event travels in.

Each event type is declared once as an `EventType`: its name (which is also its topic), the
pydantic model of its `data`, and the payload field that is the aggregate id (the CloudEvents
`subject` and the Kafka record key, so one aggregate's events stay in order on one partition).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hirestream.shared.events.types import UtcDateTime, utc_now

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
SCHEMA_BASE_URL = "https://hirestream.dev/schemas"

PayloadT = TypeVar("PayloadT", bound=BaseModel)


class CloudEvent(BaseModel, Generic[PayloadT]):
    """A CloudEvent whose `data` is one of our payload models.

    Unknown attributes are ignored, so a consumer keeps working when a producer adds extensions.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: UtcDateTime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    correlationid: str | None = None
    # The CloudEvents distributed-tracing extension: the trace of the work that made the event.
    traceparent: str | None = None
    tracestate: str | None = None
    data: PayloadT


@dataclass(frozen=True)
class EventType(Generic[PayloadT]):
    """One kind of event: its type name, payload model and schema version."""

    name: str
    payload: type[PayloadT]
    subject_field: str
    # The services whose events these may be: consumers act on no others (topic ACLs let only
    # them write, and the operator's tools must name one of them as the source).
    publishers: tuple[str, ...]
    version: int = 1
    # Events that carry a person's name or address live on a topic with a bounded retention
    # (KAFKA_PERSONAL_DATA_RETENTION_MS), so that an erasure also reaches the log in time.
    carries_personal_data: bool = False
    # Events a consumer may need from the very beginning (a read model rebuilt by replay, an
    # erasure request a service must not miss however long it was down) are kept forever.
    kept_forever: bool = False

    @property
    def topic(self) -> str:
        return self.name

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.dlq"

    @property
    def dataschema(self) -> str:
        return f"{SCHEMA_BASE_URL}/{self.name}/{self.version}.json"

    def new(
        self,
        data: PayloadT,
        *,
        source: str,
        correlation_id: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> CloudEvent[PayloadT]:
        """A new event with a fresh id: the id then stays the same across every redelivery.

        `event_id` and `time` are for an event derived from stored facts, which must come out
        the same each time it is derived (see the notifications service's in-app events)."""
        return CloudEvent[self.payload](  # type: ignore[name-defined]
            id=event_id or str(uuid.uuid4()),
            source=source,
            type=self.name,
            subject=str(getattr(data, self.subject_field)),
            time=time or utc_now(),
            dataschema=self.dataschema,
            correlationid=correlation_id,
            traceparent=(trace_context or {}).get("traceparent"),
            tracestate=(trace_context or {}).get("tracestate"),
            data=data,
        )

    @property
    def envelope(self) -> type[CloudEvent[PayloadT]]:
        """The envelope model of this event type (what consumers' handlers are typed with)."""
        return CloudEvent[self.payload]  # type: ignore[name-defined]

    def trusted(self, event: CloudEvent[PayloadT]) -> CloudEvent[PayloadT]:
        """The event, if its source is a service that publishes this type; InvalidEvent if not."""
        if event.source not in {source_of(service) for service in self.publishers}:
            raise InvalidEvent(
                f"untrusted source {event.source!r}: {self.name} comes from "
                + " or ".join(source_of(service) for service in self.publishers)
            )
        return event

    def parse(self, value: bytes | str) -> CloudEvent[PayloadT]:
        """Validate a record value as this event type; InvalidEvent says why it is not one."""
        try:
            event = self.envelope.model_validate_json(value)
        except ValidationError as error:
            raise InvalidEvent(describe_invalid(error)) from None
        if event.type != self.name:
            raise InvalidEvent(
                f"invalid event: event type {event.type!r} on the topic of {self.name!r}"
            )
        return event


def source_of(service: str) -> str:
    """The CloudEvents `source` of a hirestream service's events."""
    return f"hirestream/{service}"


class InvalidEvent(ValueError):
    """A record that is not a valid event of its topic's type; the message says why without
    echoing the value (it may hold personal data)."""


def describe_invalid(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'value'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    ]
    return "invalid event: " + "; ".join(problems)


def serialize(event: CloudEvent[Any]) -> bytes:
    """The record value: the whole envelope as compact JSON."""
    return event.model_dump_json(exclude_none=True).encode()
