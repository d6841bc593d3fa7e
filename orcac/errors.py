"""The one exception type that reaches the user as a message instead of a traceback."""

from __future__ import annotations


class OrcacError(Exception):
    """A problem the user can fix: printed as `error: <message>` (and a hint), exit status 1.

    Raise it for anything caused by input (a spec, a file, a flag, a provider's answer);
    let genuine bugs raise anything else, so they are reported as internal errors.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  to fix this: {self.hint}"
        return text
