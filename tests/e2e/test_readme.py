"""The README's quick start and curl examples, read from the README itself and run as a newcomer
runs them: `./dev.sh up` on the default ports (the `dev_system` fixture), then each shell block
of "Try it with curl" in one shell, and their answers checked."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.documents import readme_shell_blocks as shell_blocks
from tests.e2e.documents import run
from tests.support.servers import REPO

pytestmark = pytest.mark.e2e


def test_the_quick_start_has_the_two_commands_ci_runs() -> None:
    commands = shell_blocks("Quick start")[0].split()
    assert commands == ["./dev.sh", "up", "./dev.sh", "test"]
    assert "./dev.sh test" in (REPO / ".ci" / "run").read_text()


def test_the_curl_examples_publish_apply_and_reach_the_inbox(dev_system: None) -> None:
    blocks = shell_blocks("Try it with curl")
    assert len(blocks) == 2, "the section's two shell blocks"
    result = run("\n".join(blocks))
    assert result.returncode == 0, result.stdout + result.stderr

    posting, application, inbox = json_documents(result.stdout)
    assert posting["status"] == "open"
    assert application["posting_id"] == posting["posting_id"]
    assert application["candidate"]["email"] == "ada@example.com"

    # The inbox is told shortly after: the block's token and last command, again, until it is.
    token, last = blocks[1].splitlines()[0], blocks[1].rstrip().splitlines()[-1]
    deadline = time.monotonic() + 60
    while application["application_id"] not in subjects(inbox) and time.monotonic() < deadline:
        time.sleep(1)
        inbox = json.loads(run(f"{token}\n{last}").stdout)
    assert application["application_id"] in subjects(inbox)

    # And the confirmation reached the mail catcher, where the README says it lands.
    mail = REPO / ".stack" / "run" / "mail"
    while not mentions(mail, "ada@example.com") and time.monotonic() < deadline:
        time.sleep(1)
    assert mentions(mail, "ada@example.com")


def json_documents(output: str) -> list[dict[str, Any]]:
    """The JSON answers the commands printed, one after another (curl adds no newline)."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while (at := output.find("{", at)) != -1:
        document, at = decoder.raw_decode(output, at)
        documents.append(document)
    return documents


def subjects(inbox: dict[str, Any]) -> set[str]:
    return {item["subject"] for item in inbox["items"]}


def mentions(mail: Path, text: str) -> bool:
    return any(text in path.read_text(errors="replace") for path in mail.glob("*.eml"))
