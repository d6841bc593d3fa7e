"""Completion: keys and block kinds where a setting starts, declared names where a value does.

Keys, block kinds and built-in names come from the tables the compiler validates with
(`to_spec.TABLES`, `TOP_LEVEL`, `FORMS`, ...), so a key added there is offered here.

While the user types, the text is usually not valid .orca, so the parser (which stops at
the first error) cannot say where the cursor is. `context` reads the text before the
cursor with the grammar's own string and comment tokens and tracks only the nesting of
blocks, calls and lists: enough to tell a key position from a value position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orcac.compiler.to_spec import (
    CHECK_KINDS,
    FORMS,
    SOURCE_KINDS,
    TABLES,
    TOP_LEVEL,
    boolean,
    checks,
    forms,
    source,
    strategy,
)
from orcac.lsp.analysis import Analysis, referenced_kinds

_TOKEN = re.compile(
    r'(?P<string>"""(?:[^"]|"(?!""))*(?:"""|\Z)|"(?:[^"\\\n]|\\.)*(?:"|\Z))'
    r"|(?P<comment>#[^\n]*)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<number>[+-]?[0-9.][0-9A-Za-z_.%]*)"
    r"|(?P<newline>\n)"
    r"|(?P<space>[ \t\f\r]+)"
    r"|(?P<punct>.)",
    re.S,
)

# A value built from a call or a bare name: what to offer for keys with these converters.
_BUILTINS = {
    forms: (*FORMS, "regex", "max_words", "min_words"),
    source: SOURCE_KINDS,
    checks: CHECK_KINDS,
    strategy: ("best_of",),
    boolean: ("true", "false"),
}


@dataclass
class Context:
    blocks: list[str] = field(default_factory=list)  # kinds of the enclosing blocks, outermost first
    where: str = "key"  # "key" (a setting or block starts here), "value", or "none" (in a string or comment)
    key: str | None = None  # for a value: the setting it belongs to
    call: str | None = None  # for a value: the innermost call it is an argument of


def context(text: str) -> Context:
    """Where the end of `text` (the text before the cursor) is."""
    ctx = Context()
    line: list[tuple[str, str]] = []  # significant tokens on the current line
    nesting: list[str | None] = []  # open calls (their name) and lists (None), inside a value
    last = ""  # the kind of the last significant token: "{", "}", "=", "(", "[", ",", "name", "value"
    last_end = -1
    for m in _TOKEN.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind in ("space", "newline"):
            if kind == "newline":
                line = []
            continue
        last_end = m.end()
        if kind in ("string", "comment"):
            unterminated = m.end() == len(text) and (kind == "comment" or not _closed(value))
            if unterminated:
                ctx.where = "none"
                return ctx
            last = "value"
            line.append(("value", value))
            continue
        if kind == "punct" and value == "{":
            names = [v for k, v in line if k == "name"]
            header = [k for k, _ in line[-3:]]
            if header[-2:] == ["name", "name"] and (len(header) < 3 or header[0] != "="):
                ctx.blocks.append(line[-2][1])
            elif header and header[-1] == "name":
                ctx.blocks.append(line[-1][1])
            else:
                ctx.blocks.append(names[-1] if names else "")
            nesting, ctx.key, last = [], None, "{"
        elif kind == "punct" and value == "}":
            if ctx.blocks:
                ctx.blocks.pop()
            nesting, ctx.key, last = [], None, "}"
        elif kind == "punct" and value == "=":
            if not nesting and line and line[-1][0] == "name":
                ctx.key = line[-1][1]
            last = "="
        elif kind == "punct" and value == "(":
            nesting.append(line[-1][1] if line and line[-1][0] == "name" else None)
            last = "("
        elif kind == "punct" and value == "[":
            nesting.append(None)
            last = "["
        elif kind == "punct" and value in ")]":
            if nesting:
                nesting.pop()
            last = "value"
        elif kind == "punct" and value == ",":
            last = ","
        else:
            last = "name" if kind == "name" else "value"
        line.append((kind if kind == "name" else value, value))
    # The word being typed (touching the cursor) does not count: what came before it decides.
    typing = last == "name" and last_end == len(text)
    before = _before_word(text) if typing else last
    if nesting or before in ("=", "(", "[", ","):
        ctx.where = "value"
        calls = [c for c in nesting if c]
        ctx.call = calls[-1] if calls else None
    else:
        ctx.where, ctx.key = "key", None
    return ctx


def _closed(string: str) -> bool:
    if string.startswith('"""'):
        return len(string) >= 6 and string.endswith('"""')
    return len(string) >= 2 and string.endswith('"') and not string.endswith('\\"')


def _before_word(text: str) -> str:
    """The kind of the significant token before the word at the end of `text`."""
    rest = re.sub(r"[A-Za-z_][A-Za-z0-9_]*\Z", "", text).rstrip()
    if not rest:
        return "{"
    ch = rest[-1]
    return ch if ch in "{}=([," else "value"


@dataclass(frozen=True)
class Item:
    label: str
    what: str  # "key", "block", "name", "builtin"
    detail: str


def complete(text_before: str, analysis: Analysis | None) -> list[Item]:
    """What may be written at the end of `text_before`."""
    ctx = context(text_before)
    if ctx.where == "none":
        return []
    if ctx.where == "key":
        return _keys(ctx.blocks)
    kind = ctx.blocks[-1] if ctx.blocks else None
    items: list[Item] = []
    wanted = referenced_kinds(ctx.key, ctx.call)
    if analysis is not None and wanted:
        seen = set()
        for d in analysis.declarations():
            if d.kind in wanted and (d.kind, d.name) not in seen:
                seen.add((d.kind, d.name))
                items.append(Item(d.name, "name", f"{d.kind} ({d.shown}:{d.block.span.line})"))
    if kind in TABLES and ctx.key in TABLES[kind][2] and ctx.call is None:
        convert = TABLES[kind][2][ctx.key][1]
        items += [Item(b, "builtin", f"{ctx.key} value") for b in _BUILTINS.get(convert, ())]
    return items


def _keys(blocks: list[str]) -> list[Item]:
    if not blocks:
        return [Item(k, "block", "declaration") for k in TOP_LEVEL] + [
            Item("import", "builtin", 'import "FILE.orca"'),
            Item("orca", "builtin", "the language version line"),
        ]
    kind = blocks[-1]
    if kind not in TABLES:
        return []
    _, _, keys, required, nested = TABLES[kind]
    items = [Item(k, "key", f"{kind} setting" + (" (required)" if k in required else "")) for k in keys]
    return items + [Item(k, "block", f"block inside {kind}") for k in nested]
