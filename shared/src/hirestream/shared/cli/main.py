"""The `hirestream` command: its arguments, and how each subcommand runs and fails."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from hirestream.shared.cli.errors import FAILED, CliError
from hirestream.shared.cli.kafka import Kafka, capture_client_log, describe_kafka_error
from hirestream.shared.cli.output import instant
from hirestream.shared.settings import ConnectionSettings, load_settings

DEFAULT_TIMEOUT_S = 15.0
# Records a second: a redrive must not flood a consumer that has just recovered.
DEFAULT_RATE = 10.0
MAX_RATE = 1000.0

Command = Callable[[ConnectionSettings, argparse.Namespace], Coroutine[Any, Any, int]]

DESCRIPTION = """\
Operator commands for hirestream: dead letters, outbox backlog, consumer lag, and the
applications service's read models (postings, pipeline). Reads the services' settings from the
environment (KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE, MONGODB_URL, MONGODB_DATABASE);
needs no JWT_SECRET.
"""
EPILOG = """\
exit status: 0 done; 1 failed (a server away or refusing, records not found or skipped);
2 the command cannot run as given (arguments, settings, a topic that does not exist, a tool
this image lacks). Errors are one line on stderr; progress of long runs goes to stderr too.
"""


# ------------------------------------------------------------------------ the subcommands


def _with_kafka(run: Callable[[Kafka, argparse.Namespace], Awaitable[int]]) -> Command:
    async def command(settings: ConnectionSettings, args: argparse.Namespace) -> int:
        async with Kafka(settings, timeout_s=args.timeout) as kafka:
            return await run(kafka, args)

    return command


async def _dlq_list(kafka: Kafka, args: argparse.Namespace) -> int:
    from hirestream.shared.cli.dead_letters import list_command

    return await list_command(kafka, args)


async def _dlq_show(kafka: Kafka, args: argparse.Namespace) -> int:
    from hirestream.shared.cli.dead_letters import show_command

    return await show_command(kafka, args)


async def _dlq_redrive(kafka: Kafka, args: argparse.Namespace) -> int:
    from hirestream.shared.cli.dead_letters import redrive_command

    return await redrive_command(kafka, args)


async def _lag(kafka: Kafka, args: argparse.Namespace) -> int:
    from hirestream.shared.cli.lag import lag_command

    return await lag_command(kafka, args)


async def _outbox_status(settings: ConnectionSettings, args: argparse.Namespace) -> int:
    from hirestream.shared.cli.outbox_status import status_command

    return await status_command(settings, args)


async def _read_model_rebuild(settings: ConnectionSettings, args: argparse.Namespace) -> int:
    from hirestream.shared.cli.read_model import rebuild_command

    return await rebuild_command(settings, args)


# ------------------------------------------------------------------------- the arguments


def _offset(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not (sep and partition.isdigit() and offset.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not PARTITION:OFFSET (e.g. 0:42)")
    return int(partition), int(offset)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not 0 < rate <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"the rate must be above 0 and at most {MAX_RATE:g}/s")
    return rate


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


def _common(*, top: bool) -> argparse.ArgumentParser:
    """Options every subcommand takes, before its name or after it (`hirestream lag --timeout
    5`). A subcommand's copy has no default, so that it keeps what the top level parsed."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S if top else argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"how long to wait for a server to answer (default {DEFAULT_TIMEOUT_S:g})",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the Kafka client's own log",
    )
    return common


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", action="append", help="the record key (repeatable)")
    parser.add_argument(
        "--group", action="append", help="the consumer group that gave up (repeatable)"
    )
    parser.add_argument(
        "--reason",
        action="append",
        metavar="REASON",
        help="invalid, transient, handler, or words of dlq-error (repeatable)",
    )
    parser.add_argument(
        "--since",
        type=instant,
        metavar="WHEN",
        help="failed at or after WHEN: a duration back from now (30m, 2h, 7d) or an ISO time",
    )
    parser.add_argument(
        "--older-than",
        type=instant,
        metavar="WHEN",
        help="failed before WHEN: a duration back from now (30m, 2h, 7d) or an ISO time",
    )


def parser() -> argparse.ArgumentParser:
    common = _common(top=False)
    top = argparse.ArgumentParser(
        prog="hirestream",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[_common(top=True)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dlq = commands.add_parser("dlq", help="dead-letter topics: list, show, redrive")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    listing = dlq_commands.add_parser(
        "list",
        parents=[common],
        help="one line per dead letter: key, reason, group, attempts, age",
        description="Read dead-letter topics without a consumer group (nothing is committed) "
        "up to their end offsets at the start, and list the dead letters that pass the filters.",
    )
    listing.add_argument(
        "--topic", action="append", help="a dead-letter topic (repeatable; default: every one)"
    )
    _filters(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=_with_kafka(_dlq_list))

    show = dlq_commands.add_parser(
        "show",
        parents=[common],
        help="one dead letter: its headers and value, personal data masked",
    )
    show.add_argument("topic", help="the dead-letter topic, e.g. posting.created.dlq")
    show.add_argument("partition", type=int)
    show.add_argument("offset", type=int)
    show.add_argument("--json", action="store_true", help="as one JSON object")
    show.add_argument(
        "--unmasked", action="store_true", help="print the value as is, personal data included"
    )
    show.set_defaults(run=_with_kafka(_dlq_show))

    redrive = dlq_commands.add_parser(
        "redrive",
        parents=[common],
        help="produce dead letters again to their original topic",
        description="Produce the selected dead letters to their dlq-original-topic with their "
        "key, value and headers (the dlq-* ones removed; redriven-from and redriven-at added), "
        "acks=all and idempotent, one at a time at a bounded rate. The dead-letter topic is "
        "left as it is. Deploy the fix first, or the records are dead-lettered again.",
    )
    redrive.add_argument("--topic", required=True, help="the dead-letter topic")
    redrive.add_argument(
        "--offset",
        action="append",
        type=_offset,
        metavar="PARTITION:OFFSET",
        help="a dead letter by its position in the dead-letter topic (repeatable)",
    )
    redrive.add_argument(
        "--all", action="store_true", help="every dead letter that passes the filters"
    )
    _filters(redrive)
    redrive.add_argument(
        "--dry-run", action="store_true", help="print what would be sent, send nothing"
    )
    redrive.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE,
        metavar="N",
        help=f"at most N records a second (default {DEFAULT_RATE:g}, at most {MAX_RATE:g})",
    )
    redrive.set_defaults(run=_with_kafka(_dlq_redrive))

    outbox = commands.add_parser("outbox", help="the services' outboxes")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True)
    status = outbox_commands.add_parser(
        "status",
        parents=[common],
        help="pending events and the oldest one's age, per service database and collection",
        description="Per collection with an outbox: documents with pending events, the events, "
        "the documents past their due time (the sweep's business), and the age of the oldest "
        "pending event. The database is MONGODB_DATABASE when set, else each service's own.",
    )
    status.add_argument(
        "--service",
        action="append",
        choices=["postings", "applications", "notifications"],
        help="only this service's database (repeatable; default: all three)",
    )
    status.add_argument("--json", action="store_true", help="one JSON object per line")
    status.set_defaults(run=_outbox_status)

    lag = commands.add_parser(
        "lag",
        parents=[common],
        help="consumer lag per group and partition",
        description="Per consumer group and partition: the committed offset, the end offset "
        "and the lag, then each group's total.",
    )
    lag.add_argument("--group", action="append", help="only this group (repeatable)")
    lag.add_argument("--json", action="store_true", help="one JSON object per line")
    lag.set_defaults(run=_with_kafka(_lag))

    read_model = commands.add_parser(
        "read-model", help="the applications service's read models: postings, pipeline"
    )
    read_model_commands = read_model.add_subparsers(dest="read_model_command", required=True)
    rebuild = read_model_commands.add_parser(
        "rebuild",
        parents=[common],
        help="replay posting.* (or application.*) from the beginning into a read model",
        description="Replay the topics from the beginning up to the end offsets at the start, "
        "without a consumer group, into the applications service's database "
        "(MONGODB_DATABASE, default applications): posting.* into postings_view, "
        "version-guarded like the live consumer; or with --projection pipeline, application.* "
        "into the pipeline projection, idempotent like its consumer. Either can run while the "
        "service runs. Needs the applications package.",
    )
    rebuild.add_argument(
        "--projection",
        choices=["postings", "pipeline"],
        default="postings",
        help="which read model: the postings read model (default) or the pipeline projection",
    )
    rebuild.add_argument(
        "--from-scratch",
        action="store_true",
        help="empty the read model first (postings: when it holds versions newer than the "
        "topics; pipeline: it then holds only what the topics still hold)",
    )
    rebuild.set_defaults(run=_read_model_rebuild)
    return top


# ------------------------------------------------------------------------------ running


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    capture_client_log(verbose=args.verbose)
    settings = load_settings(ConnectionSettings)
    run: Command = args.run
    try:
        return asyncio.run(run(settings, args))
    except CliError as error:
        return _failed(error.message, error.exit_code)
    except KafkaError as error:
        return _failed(describe_kafka_error(error, settings), FAILED)
    except PyMongoError as error:
        from hirestream.shared.cli.mongo import describe_mongo_error

        return _failed(describe_mongo_error(error, settings), FAILED)
    except KeyboardInterrupt:
        return _failed("interrupted", 130)
    except BrokenPipeError:
        # The reader (`| head`) has gone: nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _failed(message: str, exit_code: int) -> int:
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr)
    return exit_code
