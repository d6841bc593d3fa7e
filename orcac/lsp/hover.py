"""Hover: what a name stands for, as the compiler resolved it.

On a strategy or erase message (its declaration or a reference to it): its text. On a task:
every setting after defaults are applied, each marked where it came from. On a block kind:
the keys it takes. Settings are listed generically from the declaration's fields, named and
shown as written by the settings table (orcac/specs/settings.py), so a key added to the
language shows up here unchanged.
"""

from __future__ import annotations

import dataclasses
import re

from orcac.compiler.to_spec import TABLES
from orcac.lsp.analysis import Analysis, Declared, path_of, referenced_kinds
from orcac.lsp.locate import Hit
from orcac.specs import settings
from orcac.specs.spec import BestOf, Block, CheckExpr, Named, Ref, SourceExpr, Spec

NOTES = {
    "strategy": "the teacher's instruction; the student never sees it",
    "erase": "the system message the student is trained with, in place of the strategy",
}
_INTERNAL = {"span", "spans", "origin", "name"}


def hover(analysis: Analysis, hit: Hit) -> str | None:
    """Markdown for what is under the cursor, or None where there is nothing to say."""
    node = hit.node
    if isinstance(node, Block) and not hit.on_name:
        return _kind_help(node.kind)
    if isinstance(node, Block):
        target = analysis.declared(node.name, (node.kind,))
    elif isinstance(node, Ref):
        target = analysis.declared(node.name, referenced_kinds(hit.key, hit.call))
    else:
        return None
    return _declaration(analysis, target) if target else None


def _kind_help(kind: str) -> str | None:
    if kind not in TABLES:
        return None
    _, named, keys, required, nested = TABLES[kind]
    head = f"**{kind}** {'NAME ' if named else ''}`{{ ... }}`"
    listed = ", ".join(f"`{k}`" + (" (required)" if k in required else "") for k in keys)
    blocks = f"\n\nblocks: {', '.join(f'`{k}`' for k in nested)}" if nested else ""
    return f"{head}\n\nkeys: {listed}{blocks}"


def _declaration(analysis: Analysis, target: Declared) -> str:
    decl = _resolved(analysis.spec, target)
    where = f"{_relative(target.shown, analysis)}:{target.block.span.line}"
    lines = [f"**{target.kind}** `{target.name}` — {where}"]
    if target.kind in NOTES:
        lines.append(f"*{NOTES[target.kind]}*")
    if decl is None:  # the spec did not resolve (a syntax error elsewhere): show what is written
        settings = [f"- `{m.key}`" for m in target.block.members if hasattr(m, "key")]
        return "\n\n".join(lines + ["\n".join(settings)] if settings else lines)
    defaults = analysis.spec.defaults if target.kind == "task" else None
    settings, texts = [], []
    table_keys = TABLES[target.kind][2]
    for key, value in _settings(target.kind, decl):
        if key in decl.spans or key not in table_keys:  # written here, or a nested block
            origin = ""
        elif defaults is not None and key in defaults.spans:
            origin = " *(from defaults)*"
        else:
            origin = " *(default)*"
        if _long(value):
            texts.append(f"`{key}`{origin}\n\n{_fenced(value)}")
        elif isinstance(value, tuple) and any(_has_long_text(item) for item in value):
            # e.g. a strategy's few-shot examples: each item's texts in full, one after another
            for i, item in enumerate(value, 1):
                texts.append(f"`{key}` {i} of {len(value)}{origin}\n\n{_item_texts(item)}")
        else:
            settings.append(f"- `{key}` = {_inline(_show(value))}{origin}")
    if settings:
        lines.append("\n".join(settings))
    return "\n\n".join(lines + texts)


def _long(value) -> bool:
    return isinstance(value, str) and not isinstance(value, _Written) and ("\n" in value or len(value) > 60)


def _has_long_text(item) -> bool:
    return dataclasses.is_dataclass(item) and any(_long(getattr(item, f.name)) for f in dataclasses.fields(item))


def _item_texts(item) -> str:
    """A nested declaration's fields, its long texts as code blocks."""
    parts = []
    for f in dataclasses.fields(item):
        value = getattr(item, f.name)
        if f.name in _INTERNAL - {"name"} or value is None:
            continue
        parts.append(f"{f.name}:\n\n{_fenced(value)}" if _long(value) else f"{f.name} = {_inline(_show(value))}")
    return "\n\n".join(parts)


def _resolved(spec: Spec | None, target: Declared):
    """The declaration after resolve (a task with its defaults applied), found by type and name."""
    if spec is None or target.kind not in TABLES:
        return None
    model = TABLES[target.kind][0]

    def walk(value):
        if isinstance(value, model) and getattr(value, "name", None) == target.name:
            return value
        if isinstance(value, tuple):
            for item in value:
                found = walk(item)
                if found is not None:
                    return found
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                if f.name not in _INTERNAL:
                    found = walk(getattr(value, f.name))
                    if found is not None:
                        return found
        return None

    return walk(spec)


def _settings(kind: str, decl) -> list[tuple[str, object]]:
    """(key as the user writes it, value) for every field that has a value."""
    key_of = {key.field: key for key in settings.keys(kind)}
    out = []
    for f in dataclasses.fields(decl):
        value = getattr(decl, f.name)
        if f.name in _INTERNAL or value is None or value == () or value == {}:
            continue
        key = key_of.get(f.name)
        # as written: an environment variable's name in env(...), a duration with its unit
        if key is not None and key.type == settings.ENV and isinstance(value, str):
            value = _Written(f'env("{value}")')
        elif key is not None and key.type == settings.DURATION and isinstance(value, float):
            value = _Written(f"{value:g}s")
        out.append((key.name if key is not None else f.name, value))
    return out


class _Written(str):
    """A value shown as it is written in a spec, not quoted."""


def _relative(shown: str, analysis: Analysis) -> str:
    """A file as the user would name it: std/..., or relative to the open spec's folder."""
    if shown.startswith("std/"):
        return shown
    try:
        return path_of(shown).relative_to(analysis.path.parent).as_posix()
    except ValueError:
        return shown


def _show(value) -> str:
    if isinstance(value, _Written):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Named):
        return value.name
    if isinstance(value, BestOf):
        names = ", ".join(c.name for c in value.candidates)
        return f"best_of({names}, by = {value.by}, probe = {value.probe})"
    if isinstance(value, SourceExpr):
        arg = value.query if value.kind == "sql" else value.path
        split = f", split = {_show(value.split)}" if value.split else ""
        return f"{value.kind}({_show(arg)}{split})"
    if isinstance(value, CheckExpr):
        if value.kind == "regex":
            return f"regex({_show(value.pattern)})"
        if value.kind == "numeric":
            return f"numeric(gold, tol = {value.tolerance:g})"
        return f"{value.kind}(gold)" if value.uses_gold else value.kind
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + " ".join(f"{k} = {_show(v)}" for k, v in value.items()) + " }"
    if dataclasses.is_dataclass(value):
        if hasattr(value, "description"):
            return _show(value.description)
        parts = [
            f"{f.name} = {_show(getattr(value, f.name))}"
            for f in dataclasses.fields(value)
            if f.name not in _INTERNAL and getattr(value, f.name) is not None
        ]
        head = " ".join(filter(None, [type(value).__name__.removesuffix("Decl").lower(), getattr(value, "name", None)]))
        return f"{head} {{ {' '.join(parts)} }}"
    return str(value)


def _inline(text: str) -> str:
    """`text` as inline code, whatever backticks it holds."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text.replace(chr(10), ' ')}{pad}{ticks}"


def _fenced(text: str) -> str:
    """`text` as a code block, whatever backtick fences it holds."""
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}text\n{text}\n{fence}"
