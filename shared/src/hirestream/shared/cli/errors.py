"""How the CLI fails: one line on stderr, and an exit code a script can tell apart."""

from __future__ import annotations

# Exit codes: the command ran and something failed (a broker away, a refusal); the command
# could not run as given (its arguments, its settings, a tool this image lacks).
FAILED = 1
USAGE = 2


class CliError(Exception):
    """A failure the operator can act on, said in one line."""

    def __init__(self, message: str, *, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
