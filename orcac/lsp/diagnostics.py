"""The compiler's diagnostics as LSP diagnostics, grouped by the file they are in.

The message is `orcac check`'s message; its hint (the "to fix this" line) follows on a
second line, as `orcac check` prints it below the caret.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.uris import from_fs_path
from pygls.workspace.position_codec import PositionCodec

from orcac.lsp.analysis import Analysis, path_of
from orcac.lsp.positions import to_range

SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}


def by_file(analysis: Analysis, codec: PositionCodec) -> dict[str, list[types.Diagnostic]]:
    """uri -> diagnostics; one without a position goes to the start of the spec itself."""
    out: dict[str, list[types.Diagnostic]] = {from_fs_path(str(analysis.path)): []}
    lines: dict[str, list[str]] = {}
    for d in analysis.unit.diags.items:
        shown = d.span.file if d.span else analysis.shown
        if shown not in lines:
            try:
                lines[shown] = analysis.text(shown).splitlines(keepends=True)
            except (OSError, UnicodeDecodeError):
                lines[shown] = []
        message = d.message + (f"\n{d.hint}" if d.hint else "")
        diagnostic = types.Diagnostic(
            range=to_range(d.span, lines[shown], codec),
            message=message,
            severity=SEVERITY.get(d.severity, types.DiagnosticSeverity.Error),
            source="orcac",
        )
        out.setdefault(from_fs_path(str(path_of(shown))), []).append(diagnostic)
    return out
