"""Errors that reach users as one line (the CLI prints them without a traceback)."""


class WsolbenchError(Exception):
    """A user-facing error: its message names the thing that is wrong and the fix."""

    exit_code = 1


class UsageError(WsolbenchError):
    """Bad command-line or config input (unknown name, bad key or value)."""

    exit_code = 2
