"""`hirestream dlq list|show|redrive`: the dead-letter topics, read without a consumer group.

A dead letter is the original record (key, value, headers) plus the `dlq-*` headers the
consumer's middleware added (messaging/dead_letters.py). Listing and showing only read;
redriving produces each selected record again to its original topic and leaves the dead-letter
topic as it is (its records expire with its retention), so a redrive can be repeated: the
consumers deduplicate by event id and version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from hirestream.shared.cli.errors import FAILED, USAGE, CliError
from hirestream.shared.cli.kafka import Kafka
from hirestream.shared.cli.output import age, json_line, table
from hirestream.shared.cli.reading import Progress, Record, read_one, read_to_end

DLQ_HEADER_PREFIX = "dlq-"
ORIGINAL_TOPIC = "dlq-original-topic"
REDRIVEN_FROM = "redriven-from"
REDRIVEN_AT = "redriven-at"

# The middleware does not store its reason; its `dlq-error` lines begin like this
# (messaging/dead_letters.py: `_handle`), and every other line is about an invalid value.
REASONS = ("invalid", "transient", "handler")
HANDLER_PREFIX = "handler failed:"
TRANSIENT_PREFIX = "transient failure"

ERROR_WIDTH = 80

# Fields that name or reach a person, wherever they appear in a value, and the candidate of an
# application event, except its pseudonymous id.
PERSONAL_FIELDS = frozenset({"name", "email", "resume_url", "cover_letter"})
CANDIDATE_PATH = ("data", "candidate")
KEPT_CANDIDATE_FIELDS = frozenset({"candidate_id"})
MASK = "***"


def reason_of(error: str | None) -> str:
    if error is None:
        return "unknown"
    if error.startswith(HANDLER_PREFIX):
        return "handler"
    if error.startswith(TRANSIENT_PREFIX):
        return "transient"
    return "invalid"


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @classmethod
    def of(cls, record: Record) -> DeadLetter:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((name, bytes(value or b"")) for name, value in record.headers or ()),
            timestamp_ms=record.timestamp,
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def where(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def key_text(self) -> str | None:
        return None if self.key is None else self.key.decode(errors="replace")

    @property
    def error(self) -> str | None:
        return self.header("dlq-error")

    @property
    def reason(self) -> str:
        return reason_of(self.error)

    @property
    def group(self) -> str | None:
        return self.header("dlq-consumer-group")

    @property
    def attempts(self) -> str | None:
        return self.header("dlq-attempts")

    @property
    def original_topic(self) -> str | None:
        return self.header(ORIGINAL_TOPIC)

    @property
    def failed_at(self) -> datetime:
        """When the consumer gave up (its header), else when the dead letter was written."""
        stamped = self.header("dlq-failed-at")
        if stamped:
            try:
                parsed = datetime.fromisoformat(stamped.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except ValueError:
                pass
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def age_s(self, now: datetime) -> float:
        return (now - self.failed_at).total_seconds()

    def summary(self, now: datetime) -> dict[str, Any]:
        attempts = self.attempts
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key_text,
            "reason": self.reason,
            "group": self.group,
            "attempts": int(attempts) if attempts and attempts.isdigit() else attempts,
            "failed_at": self.failed_at.isoformat(),
            "age_s": round(self.age_s(now), 3),
            "error": self.error,
            "original_topic": self.original_topic,
            "original_partition": self.header("dlq-original-partition"),
            "original_offset": self.header("dlq-original-offset"),
        }


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command takes: chosen by key or position (or all of them), then
    narrowed by every filter given."""

    keys: frozenset[str] = frozenset()
    offsets: frozenset[tuple[int, int]] = frozenset()
    everything: bool = False
    groups: frozenset[str] = frozenset()
    reasons: tuple[str, ...] = ()
    since: datetime | None = None
    older_than: datetime | None = None

    @classmethod
    def of(cls, args: argparse.Namespace, *, everything: bool) -> Selection:
        return cls(
            keys=frozenset(args.key or ()),
            offsets=frozenset(getattr(args, "offset", None) or ()),
            everything=everything,
            groups=frozenset(args.group or ()),
            reasons=tuple(args.reason or ()),
            since=args.since,
            older_than=args.older_than,
        )

    def takes(self, dead: DeadLetter) -> bool:
        chosen = (
            self.everything
            or dead.key_text in self.keys
            or (dead.partition, dead.offset) in self.offsets
        )
        return chosen and self.passes_filters(dead)

    def passes_filters(self, dead: DeadLetter) -> bool:
        if self.groups and dead.group not in self.groups:
            return False
        if self.reasons and not any(_reason_matches(r, dead) for r in self.reasons):
            return False
        if self.since is not None and dead.failed_at < self.since:
            return False
        return self.older_than is None or dead.failed_at < self.older_than


def _reason_matches(wanted: str, dead: DeadLetter) -> bool:
    if wanted in REASONS:
        return dead.reason == wanted
    return wanted.lower() in (dead.error or "").lower()


def masked(value: Any, path: tuple[str, ...] = ()) -> Any:
    """`value` with personal data replaced by a mask; the structure stays readable."""
    if path[:2] == CANDIDATE_PATH and len(path) == 2:
        if not isinstance(value, dict):
            return MASK
        return {k: v if k in KEPT_CANDIDATE_FIELDS else MASK for k, v in value.items()}
    if isinstance(value, dict):
        return {
            key: MASK
            if (key in PERSONAL_FIELDS or key.endswith("_email")) and value[key] is not None
            else masked(value[key], (*path, key))
            for key in value
        }
    if isinstance(value, list):
        return [masked(item, (*path, "[]")) for item in value]
    return value


def redriven_headers(dead: DeadLetter, now: datetime) -> list[tuple[str, bytes]]:
    """The original headers (the `dlq-*` ones removed, and an earlier redrive's mark), plus
    where this record was redriven from, and when."""
    kept = [
        (name, value)
        for name, value in dead.headers
        if not name.startswith(DLQ_HEADER_PREFIX) and name not in {REDRIVEN_FROM, REDRIVEN_AT}
    ]
    stamp = now.isoformat(timespec="milliseconds")
    return [*kept, (REDRIVEN_FROM, dead.where.encode()), (REDRIVEN_AT, stamp.encode())]


async def dead_letters(kafka: Kafka, topics: Iterable[str]) -> AsyncIterator[DeadLetter]:
    consumer = await kafka.consumer()
    for topic in topics:
        partitions = await kafka.partitions([topic])
        async for record in read_to_end(consumer, partitions, label=f"reading {topic}"):
            yield DeadLetter.of(record)


# ---------------------------------------------------------------------------- the commands


async def list_command(kafka: Kafka, args: argparse.Namespace) -> int:
    if args.topic:
        for topic in args.topic:
            await kafka.require_dead_letter_topic(topic)
        topics = sorted(set(args.topic))
    else:
        topics = await kafka.dead_letter_topics()
        if not topics:
            print("no dead-letter topics", file=sys.stderr)
            return 0
    selection = Selection.of(args, everything=not args.key)
    now = datetime.now(UTC)
    rows: list[DeadLetter] = []
    for topic in topics:
        read = 0
        shown = 0
        async for dead in dead_letters(kafka, [topic]):
            read += 1
            if selection.takes(dead):
                shown += 1
                rows.append(dead)
        print(f"{topic}: {read} dead letters, {shown} listed", file=sys.stderr)
    rows.sort(key=lambda d: (d.topic, d.failed_at, d.partition, d.offset))
    if args.json:
        for dead in rows:
            print(json_line(dead.summary(now)))
        return 0
    if rows:
        headers = ["TOPIC", "RECORD", "KEY", "REASON", "GROUP", "ATTEMPTS", "AGE", "ERROR"]
        lines = table(
            headers,
            [
                [
                    d.topic,
                    f"{d.partition}/{d.offset}",
                    d.key_text if d.key is not None else "-",
                    d.reason,
                    d.group or "-",
                    d.attempts or "-",
                    age(d.age_s(now)),
                    _shortened(d.error or "-"),
                ]
                for d in rows
            ],
        )
        print("\n".join(lines))
    return 0


def _shortened(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"


async def show_command(kafka: Kafka, args: argparse.Namespace) -> int:
    await kafka.require_dead_letter_topic(args.topic)
    tp = TopicPartition(args.topic, args.partition)
    if tp not in await kafka.partitions([args.topic]):
        raise CliError(f"{args.topic} has no partition {args.partition}", exit_code=USAGE)
    record = await read_one(await kafka.consumer(), tp, args.offset)
    if record is None:
        raise CliError(f"no record at {args.topic}/{args.partition}/{args.offset}", exit_code=USAGE)
    dead = DeadLetter.of(record)
    value, note = _shown_value(dead.value, unmasked=args.unmasked)
    if args.unmasked:
        print("warning: the value is shown as is, personal data included", file=sys.stderr)
    if args.json:
        shown = {
            "topic": dead.topic,
            "partition": dead.partition,
            "offset": dead.offset,
            "key": dead.key_text,
            "reason": dead.reason,
            "timestamp": datetime.fromtimestamp(dead.timestamp_ms / 1000, UTC).isoformat(),
            "headers": {name: v.decode(errors="replace") for name, v in dead.headers},
            "value": value,
            "value_note": note,
        }
        print(json_line(shown))
        return 0
    print(dead.where)
    print(f"key: {dead.key_text if dead.key is not None else '-'}")
    print(f"reason: {dead.reason}")
    print("headers:")
    for name, raw in dead.headers:
        print(f"  {name}: {raw.decode(errors='replace')}")
    print(f"value ({note}):")
    if isinstance(value, str) and note.startswith("as is"):
        print(value)
    elif value is not None:
        print(json.dumps(value, indent=2, ensure_ascii=False, default=str))
    return 0


def _shown_value(raw: bytes | None, *, unmasked: bool) -> tuple[Any, str]:
    """The value to print and a note on how it is shown."""
    if raw is None:
        return None, "none"
    if unmasked:
        return raw.decode(errors="replace"), f"as is, {len(raw)} bytes"
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None, (
            f"{len(raw)} bytes, not JSON, not shown as it may hold personal data; "
            "--unmasked shows it"
        )
    return masked(parsed), "JSON, personal data masked"


class Pace:
    """At most `rate` sends a second."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = time.monotonic()

    async def wait(self) -> None:
        delay = self.next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.next_at = max(self.next_at, time.monotonic()) + self.interval


async def redrive_command(kafka: Kafka, args: argparse.Namespace) -> int:
    if not (args.all or args.key or args.offset):
        raise CliError(
            "say which dead letters to redrive: --key KEY, --offset PARTITION:OFFSET or --all",
            exit_code=USAGE,
        )
    if args.all and (args.key or args.offset):
        raise CliError(
            "--all selects every dead letter: leave out --key and --offset", exit_code=USAGE
        )
    await kafka.require_dead_letter_topic(args.topic)
    selection = Selection.of(args, everything=args.all)
    chosen = [dead async for dead in dead_letters(kafka, [args.topic]) if selection.takes(dead)]

    missing = [
        f"{args.topic}/{p}/{o}"
        for p, o in sorted(selection.offsets)
        if not any((d.partition, d.offset) == (p, o) for d in chosen)
    ]
    missing += [f"key {k}" for k in sorted(selection.keys) if all(d.key_text != k for d in chosen)]
    for what in missing:
        print(f"not found (or filtered out): {what}", file=sys.stderr)

    topics = await kafka.topics()
    sendable: list[DeadLetter] = []
    for dead in chosen:
        target = dead.original_topic
        if target is None or target not in topics:
            print(
                f"skipped {dead.where}: its {ORIGINAL_TOPIC} "
                f"({target or 'missing'}) is not a topic here",
                file=sys.stderr,
            )
            continue
        sendable.append(dead)

    verb = "would send" if args.dry_run else "sent"
    producer = None if args.dry_run else await kafka.producer()
    pace = Pace(args.rate)
    progress = Progress(f"redriving {args.topic}", len(sendable), unit="dead letters")
    for dead in sendable:
        key = dead.key_text if dead.key is not None else "-"
        target = dead.original_topic or ""
        if producer is None:
            print(f"{verb} {dead.where} -> {target} key={key} reason={dead.reason}")
            continue
        await pace.wait()
        now = datetime.now(UTC)
        sent = await producer.send_and_wait(
            target, dead.value, key=dead.key, headers=redriven_headers(dead, now)
        )
        print(
            f"{verb} {dead.where} -> {sent.topic}/{sent.partition}/{sent.offset} "
            f"key={key} reason={dead.reason}",
            flush=True,
        )
        progress.advance()
    progress.finish()
    skipped = len(chosen) - len(sendable)
    print(
        f"{'dry run: ' if args.dry_run else ''}{verb} {len(sendable)} of {len(chosen)} "
        "selected dead letters" + (f", {skipped} skipped" if skipped else ""),
        file=sys.stderr,
    )
    return FAILED if missing or skipped else 0
