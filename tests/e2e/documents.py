"""Reading the shell blocks of the README and the runbook, and running them as a newcomer or
an operator would: `bash -euo pipefail` in the repository, with no terminal."""

from __future__ import annotations

import os
import re
import subprocess

from tests.support.servers import REPO

README = REPO / "README.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def readme_section(title: str) -> str:
    text = README.read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def readme_shell_blocks(title: str) -> list[str]:
    return BLOCK.findall(readme_section(title))


def run(script: str, *, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env={**os.environ, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
