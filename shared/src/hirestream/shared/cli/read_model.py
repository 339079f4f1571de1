"""`hirestream read-model rebuild`: the applications service's postings read model, replayed
from the `posting.*` topics, or (`--projection pipeline`) its pipeline projection, replayed
from `application.*`. The replay is the applications package's own code: an image without that
package (postings, notifications) cannot run it, and says so."""

from __future__ import annotations

import argparse

from hirestream.shared.cli.errors import USAGE, CliError
from hirestream.shared.settings import ConnectionSettings

PACKAGE = "hirestream.applications"


async def rebuild_command(settings: ConnectionSettings, args: argparse.Namespace) -> int:
    try:
        from hirestream.applications import rebuild_pipeline, rebuild_read_model
    except ModuleNotFoundError as missing:
        if missing.name != PACKAGE:  # the package is there, something it needs is not
            raise
        raise CliError(
            f"read-model rebuild needs the applications service's package ({PACKAGE}), which "
            "is not installed here: run it in the applications image or the dev virtualenv",
            exit_code=USAGE,
        ) from None
    database = (
        settings.mongodb_database
        if "mongodb_database" in settings.model_fields_set
        else rebuild_read_model.DATABASE
    )
    if args.projection == "pipeline":
        pipeline = await rebuild_pipeline.rebuild(
            settings, database=database, from_scratch=args.from_scratch, timeout_s=args.timeout
        )
        print(
            f"pipeline projection in database {database} rebuilt"
            f"{' from scratch' if args.from_scratch else ''}: {pipeline.records} records read, "
            f"{pipeline.recorded} steps recorded, "
            f"{pipeline.invalid} invalid (skipped: the live consumer dead-lettered them)"
        )
        return 0
    report = await rebuild_read_model.rebuild(
        settings, database=database, from_scratch=args.from_scratch, timeout_s=args.timeout
    )
    print(
        f"postings read model in database {database} rebuilt"
        f"{' from scratch' if args.from_scratch else ''}: {report.records} records read, "
        f"{report.applied} applied, {report.already_newer} already newer, "
        f"{report.invalid} invalid (skipped: the live consumer dead-lettered them)"
    )
    return 0
