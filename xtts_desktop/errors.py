"""Errors meant for people: one clear sentence and the exit code the command line returns."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; its message is shown as it is, without a traceback."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class Cancelled(Exception):
    """A job was cancelled on purpose (Stop, a new Play, a closed window or connection)."""
