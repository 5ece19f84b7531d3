"""The one exception type that command-line tools turn into a one-line message and exit code 2."""
from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from a user (a value, a file, a name); the message names it and says what to do."""


def where(path: object, line: int | None = None) -> str:
    """Format a location for an error message: ``path`` or ``path:line``."""
    return f"{path}:{line}" if line is not None else str(path)
