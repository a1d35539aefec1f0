"""The user-facing error types, at the bottom of the house so every layer can raise them.

Both carry ``lines``: one message per problem, each naming the field or value and what was
expected; the command line prints them and exits with code 2, without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: reported in one line per problem, exit code 2."""

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class ConfigError(UserError):
    """An invalid config (or steering command): one line per problem."""
