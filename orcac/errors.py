"""The one exception type that reaches the user as a message instead of a traceback."""

from __future__ import annotations

import re

# C0 and C1 control characters (ESC, CR, BEL, backspace, DEL, CSI, ...) and the bidirectional
# overrides and isolates that reorder what a terminal shows. Tab and newline are layout, kept.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    r"""`text` safe for a terminal or a log: every control character shown as its escape.

    Everything orcac prints that came from outside (a provider's error body, an answer, a
    row of data) goes through this, so an `ESC[2J` in a 401 body cannot clear the screen.

    >>> print(printable("denied\x1b[2J\x07 (401)"))
    denied\x1b[2J\x07 (401)
    """
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], str(text))


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
        text = f"error: {printable(self.message)}"
        if self.hint:
            text += f"\n  to fix this: {printable(self.hint)}"
        return text
