"""The pygls server: open documents in; diagnostics, formatting, hover, definition, completion out.

Each open .orca document is checked as `orcac check` checks it, with every open buffer read
in place of its file, on open and on every change; so is every open spec that read the
changed document (a spec that imports it). Handlers run one at a time on pygls's event loop:
the parser is not reentrant. A check takes ~15 ms for the examples but ~0.75 s for a spec
of 2,000 tasks, so changes are checked once typing pauses (`PAUSE_S`), not per keystroke.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from orcac import __version__
from orcac.compiler.fmt import format_text
from orcac.lsp import analysis, completion, definition, diagnostics, hover, locate
from orcac.lsp.positions import from_position, to_range
from orcac.specs.diagnostics import CompileError

PAUSE_S = 0.15


class OrcaServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("orcac", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.latest: dict[str, analysis.Analysis] = {}  # uri -> the last check of that document
        self.parsed: dict[str, analysis.Analysis] = {}  # uri -> the last check where it parsed
        self.published: dict[str, dict[str, list]] = {}  # uri -> {file uri: diagnostics} it reported
        self.pending: dict[str, asyncio.TimerHandle] = {}  # uri -> its check, once typing pauses

    # -- checking --

    def open_specs(self) -> dict[str, Path]:
        out = {}
        for uri in self.workspace.text_documents:
            path = to_fs_path(uri)
            if path and path.endswith(".orca"):
                out[uri] = Path(path)
        return out

    def unsaved(self) -> dict[Path, str]:
        return {path: self.workspace.get_text_document(uri).source for uri, path in self.open_specs().items()}

    def recheck_soon(self, changed: str) -> None:
        """Check `changed` when no other change to it came for PAUSE_S."""
        if changed in self.pending:
            self.pending.pop(changed).cancel()
        self.pending[changed] = asyncio.get_running_loop().call_later(PAUSE_S, self.recheck, changed)

    def recheck(self, changed: str) -> None:
        """Check the changed document, then every open spec that read it."""
        self.pending.pop(changed, None)
        specs = self.open_specs()
        if changed not in specs:
            return
        buffers = self.unsaved()
        changed_path = specs[changed].resolve()
        order = [changed] + [
            u for u, a in self.latest.items() if u != changed and u in specs and changed_path in a.files
        ]
        for uri in order:
            try:
                result = analysis.run(specs[uri], buffers)
            except Exception as error:  # noqa: BLE001 - a bug in orcac: say so, keep serving the other features
                message = f"orcac: internal error checking {specs[uri].name}: {type(error).__name__}: {error}; this is a bug in orcac"
                self.window_log_message(types.LogMessageParams(type=types.MessageType.Error, message=message))
                continue
            self.latest[uri] = result
            if result.module is not None:
                self.parsed[uri] = result
            self.publish(uri, diagnostics.by_file(result, self.workspace.position_codec))

    def publish(self, owner: str, found: dict[str, list]) -> None:
        """Report `owner`'s diagnostics, merged per file with what other open specs report."""
        before = self.published.get(owner, {})
        self.published[owner] = found
        for uri in set(before) | set(found):
            merged, seen = [], set()
            for reports in self.published.values():
                for d in reports.get(uri, ()):
                    key = (d.range.start.line, d.range.start.character, d.message)
                    if key not in seen:
                        seen.add(key)
                        merged.append(d)
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=merged))

    def forget(self, uri: str) -> None:
        if uri in self.pending:
            self.pending.pop(uri).cancel()
        self.latest.pop(uri, None)
        self.parsed.pop(uri, None)
        self.publish(uri, {})
        self.published.pop(uri, None)

    # -- lookups --

    def hit(self, uri: str, position: types.Position) -> tuple[analysis.Analysis, locate.Hit] | None:
        """The node under the cursor, in the last check where the document parsed."""
        result = self.parsed.get(uri)
        if result is None or result.module is None:
            return None
        text = self.workspace.get_text_document(uri).source
        line, col = from_position(position, text, self.workspace.position_codec)
        found = locate.at(result.module, line, col)
        return (result, found) if found else None


server = OrcaServer()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: OrcaServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.recheck(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: OrcaServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.recheck_soon(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: OrcaServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.recheck(params.text_document.uri)  # a source file beside it may have changed too


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: OrcaServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.forget(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: OrcaServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
    document = ls.workspace.get_text_document(params.text_document.uri)
    try:
        new = format_text(document.source, document.path)
    except CompileError:
        return None  # a syntax error: its diagnostic is already shown, and nothing is rewritten
    if new == document.source:
        return []
    lines = document.lines
    end = types.Position(line=len(lines), character=0)
    return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end), new_text=new)]


@server.feature(types.TEXT_DOCUMENT_HOVER)
def on_hover(ls: OrcaServer, params: types.HoverParams) -> types.Hover | None:
    found = ls.hit(params.text_document.uri, params.position)
    if found is None:
        return None
    text = hover.hover(*found)
    if text is None:
        return None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: OrcaServer, params: types.DefinitionParams) -> types.Location | None:
    found = ls.hit(params.text_document.uri, params.position)
    if found is None:
        return None
    result, hit = found
    target = definition.definition(result, hit)
    if target is None:
        return None
    path, declared = target
    if declared is None:
        span_range = to_range(None, "", ls.workspace.position_codec)
    else:
        span_range = to_range(declared.span, result.text(declared.shown), ls.workspace.position_codec)
    return types.Location(uri=from_fs_path(str(path)), range=span_range)


_ITEM_KINDS = {
    "key": types.CompletionItemKind.Property,
    "block": types.CompletionItemKind.Class,
    "name": types.CompletionItemKind.Reference,
    "builtin": types.CompletionItemKind.Keyword,
}


@server.feature(types.TEXT_DOCUMENT_COMPLETION)
def on_completion(ls: OrcaServer, params: types.CompletionParams) -> types.CompletionList:
    document = ls.workspace.get_text_document(params.text_document.uri)
    line, col = from_position(params.position, document.source, ls.workspace.position_codec)
    lines = document.source.splitlines(keepends=True)
    before = "".join(lines[: line - 1]) + (lines[line - 1][: col - 1] if line - 1 < len(lines) else "")
    known = ls.parsed.get(params.text_document.uri) or ls.latest.get(params.text_document.uri)
    items = [
        types.CompletionItem(
            label=item.label,
            kind=_ITEM_KINDS[item.what],
            detail=item.detail,
            insert_text=f"{item.label} = " if item.what == "key" else None,
        )
        for item in completion.complete(before, known)
    ]
    return types.CompletionList(is_incomplete=False, items=items)


def command(args) -> int:
    """`orcac lsp`: serve over stdin/stdout until the client says exit."""
    server.start_io()
    return 0
