"""`hirestream outbox status`: the events each service has recorded and not yet published.

An aggregate's pending events live in its own document (`outbox`, messaging/outbox.py), and
every document holding some has `outbox_due_at` set, so the outbox index finds them: nothing
here scans a collection. Events normally leave within milliseconds; documents past their due
time are the sweep's business (left by a crash or a failed publish), and an old oldest event
means the relay cannot publish (the broker away, or refusing the service's principal).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hirestream.shared.cli.errors import USAGE, CliError
from hirestream.shared.cli.mongo import mongo_client
from hirestream.shared.cli.output import age, json_line, table
from hirestream.shared.messaging.outbox import DUE_AT, OUTBOX
from hirestream.shared.settings import ConnectionSettings

# Each service's database is named after it unless MONGODB_DATABASE says otherwise (the
# `mongodb_database` default of each service's settings).
SERVICES = ("postings", "applications", "notifications")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Pending documents read per collection to find the oldest event; beyond this (a broker away
# for long) the documents are counted and the oldest is sought among the first ones due.
READ_AT_MOST = 10_000


@dataclass(frozen=True)
class CollectionOutbox:
    database: str
    collection: str
    documents: int
    events: int
    overdue: int
    oldest: datetime | None
    complete: bool  # False: more documents are pending than were read

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "database": self.database,
            "collection": self.collection,
            "pending_documents": self.documents,
            "pending_events": self.events if self.complete else None,
            "overdue_documents": self.overdue,
            "oldest_pending_at": self.oldest.isoformat() if self.oldest else None,
            "oldest_pending_age_s": round((now - self.oldest).total_seconds(), 3)
            if self.oldest
            else None,
        }


def databases(settings: ConnectionSettings, services: list[str] | None) -> list[str]:
    if "mongodb_database" in settings.model_fields_set:
        if services:
            raise CliError(
                f"MONGODB_DATABASE names the database ({settings.mongodb_database}); --service "
                "picks services' databases only when it is unset",
                exit_code=USAGE,
            )
        return [settings.mongodb_database]
    return list(dict.fromkeys(services or SERVICES))


async def outbox_status(
    settings: ConnectionSettings, *, databases: list[str], timeout_s: float
) -> list[CollectionOutbox]:
    client = mongo_client(settings, timeout_s=timeout_s)
    found: list[CollectionOutbox] = []
    try:
        for name in databases:
            db = client[name]
            for collection_name in sorted(await db.list_collection_names()):
                collection = db[collection_name]
                indexed = [
                    index
                    async for index in await collection.list_indexes()
                    if DUE_AT in dict(index["key"])
                ]
                if indexed:
                    found.append(await _pending(name, collection))
    finally:
        await client.close()
    return found


async def _pending(database: str, collection: Any) -> CollectionOutbox:
    now = datetime.now(UTC)
    due = {DUE_AT: {"$gte": EPOCH}}
    docs = (
        await collection.find(due, projection={f"{OUTBOX}.at": 1, DUE_AT: 1})
        .sort(DUE_AT, 1)
        .limit(READ_AT_MOST)
        .to_list()
    )
    pending = [doc for doc in docs if doc.get(OUTBOX)]
    complete = len(docs) < READ_AT_MOST
    documents = len(pending)
    overdue = sum(1 for doc in pending if doc[DUE_AT] <= now)
    if not complete:
        documents = await collection.count_documents({**due, OUTBOX: {"$ne": []}})
        overdue = await collection.count_documents({DUE_AT: {"$lte": now}, OUTBOX: {"$ne": []}})
    recorded = [
        entry["at"]
        for doc in pending
        for entry in doc[OUTBOX]
        if isinstance(entry, dict) and isinstance(entry.get("at"), datetime)
    ]
    return CollectionOutbox(
        database=database,
        collection=collection.name,
        documents=documents,
        events=sum(len(doc[OUTBOX]) for doc in pending),
        overdue=overdue,
        oldest=min(recorded, default=None),
        complete=complete,
    )


async def status_command(settings: ConnectionSettings, args: argparse.Namespace) -> int:
    names = databases(settings, args.service)
    found = await outbox_status(settings, databases=names, timeout_s=args.timeout)
    now = datetime.now(UTC)
    for name in names:
        if not any(c.database == name for c in found):
            print(f"{name}: no outbox collections (database empty or absent)", file=sys.stderr)
    if args.json:
        for collection in found:
            print(json_line(collection.row(now)))
        return 0
    if found:
        headers = ["DATABASE", "COLLECTION", "PENDING_DOCS", "PENDING_EVENTS", "OVERDUE_DOCS"]
        rows = [
            [
                c.database,
                c.collection,
                c.documents,
                c.events if c.complete else f">={c.events}",
                c.overdue,
                age((now - c.oldest).total_seconds()) if c.oldest else "-",
            ]
            for c in found
        ]
        print("\n".join(table([*headers, "OLDEST_PENDING"], rows)))
    return 0
