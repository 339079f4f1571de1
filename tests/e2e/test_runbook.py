"""The runbook's local commands, read from docs/runbook.md and run as an operator runs them on
the system `./dev.sh up` starts: the operator CLI's read-only commands, and the Kafka tools'
blocks for consumer groups, dead letters, topics and ACLs (as operator, over SCRAM). Commands
that change the system (redrive, more partitions, password rotation) are exercised by their own
tests (tests/integration/test_cli.py, tests/integration/test_kafka_security.py), not here."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.documents import BLOCK, run
from tests.support.polling import eventually
from tests.support.servers import REPO

pytestmark = pytest.mark.e2e

RUNBOOK = REPO / "docs" / "runbook.md"


def subsection(title: str) -> str:
    text = RUNBOOK.read_text()
    return re.split(r"\n#{2,3} ", text.split(f"\n{title}\n", 1)[1], maxsplit=1)[0]


def block(title: str, index: int = 0) -> str:
    return str(BLOCK.findall(subsection(title))[index])


@pytest.fixture(scope="module")
def system_up(dev_system: None) -> None:
    """The system the README starts, with the demo's postings and applications in it."""
    demo = run("./dev.sh demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr


def local_cli_commands() -> list[str]:
    """The `hirestream ...` commands of the CLI's table that only read, as `./dev.sh` runs them."""
    table = subsection("## The operator command: `hirestream`")
    commands = re.findall(r"^\| `hirestream ([a-z -]+?)(?: \[|`)", table, re.MULTILINE)
    return [command.strip() for command in commands if command.strip() in READ_ONLY]


READ_ONLY = {"dlq list", "outbox status", "lag"}


def test_the_cli_table_lists_the_read_only_commands() -> None:
    assert set(local_cli_commands()) == READ_ONLY


@pytest.mark.parametrize("command", sorted(READ_ONLY))
async def test_the_operator_command_runs_as_written(system_up: None, command: str) -> None:
    assert "./dev.sh hirestream --help" in block("## The operator command: `hirestream`")

    async def answered() -> subprocess.CompletedProcess[str] | None:
        done = run(f"./dev.sh hirestream {command}", timeout_s=120)
        # lag has nothing to show until the demo's postings were consumed and committed
        return done if done.returncode == 0 else None

    done = await eventually(answered, timeout_s=60, every_s=2)
    assert (done.stdout + done.stderr).strip()  # listings on stdout, per-topic totals on stderr


# The Kafka tools' blocks, each after the client settings block, and what their output shows.
KAFKA_BLOCKS = {
    "### Kafka: consumer groups": "notifications",
    "### Kafka: read dead letters": "Processed a total of",
    "### Kafka: topics and partitions": "PartitionCount",
    "### Kafka: principals and ACLs": "User:notifications",
}


@pytest.mark.parametrize("title", list(KAFKA_BLOCKS))
def test_the_kafka_commands_run_as_written(system_up: None, title: str) -> None:
    settings = block("### Kafka: client settings")
    # What changes the system stays out: only the block's reading part.
    script = block(title).split("# more partitions")[0]
    done = run(settings + script, timeout_s=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert KAFKA_BLOCKS[title] in done.stdout + done.stderr
    assert "AuthorizationException" not in done.stderr
    assert "SaslAuthenticationException" not in done.stderr
