"""One compiler run over an editor's buffers, and what the features look up in it.

The run is `orcac check`'s own (`orcac.compiler.analyze`, up to the `check` pass), with
the open buffers read in place of the files on disk. The main file is named by its
absolute path, so every file shown in a diagnostic is either an absolute path or
`std/...` (load.py joins imports onto their importer's shown name).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from orcac.compiler import Unit, analyze
from orcac.compiler.load import STDLIB
from orcac.compiler.to_spec import TABLES
from orcac.specs.spec import Block, Module, Span


def path_of(shown: str) -> Path:
    """The file behind a name as diagnostics show it (see the module docstring)."""
    if shown.startswith("std/"):
        return STDLIB / shown[4:]
    return Path(posixpath.normpath(shown))


@dataclass(frozen=True)
class Declared:
    """A named block as written: `kind name { ... }`, in the file `shown`."""

    kind: str
    name: str
    shown: str
    block: Block

    @property
    def span(self) -> Span:
        return self.block.name_span


@dataclass
class Analysis:
    """The compiler's view of one open spec: its diagnostics, the files it read, the Spec."""

    path: Path  # the document, absolute
    unit: Unit
    modules: dict[str, Module] = field(default_factory=dict)  # shown name -> parsed module

    @property
    def shown(self) -> str:
        return str(self.path)

    @property
    def module(self) -> Module | None:
        """The document's own parse, or None when it has a syntax error."""
        return self.modules.get(self.shown)

    @property
    def spec(self):
        return self.unit.spec

    @property
    def files(self) -> set[Path]:
        """Every file this run read: a change to one of them means this spec is re-checked."""
        return {path_of(shown).resolve() for shown in self.unit.diags.sources}

    def text(self, shown: str) -> str:
        if shown in self.unit.diags.sources:
            return self.unit.diags.sources[shown]
        return path_of(shown).read_text(encoding="utf-8")

    @cached_property
    def _declarations(self) -> list[Declared]:
        """Every named block in every file read, nested ones (stages) included, in file order."""
        out: list[Declared] = []

        def walk(blocks, shown: str) -> None:
            for b in blocks:
                if b.name is not None:
                    out.append(Declared(b.kind, b.name, shown, b))
                walk([m for m in b.members if isinstance(m, Block)], shown)

        for shown, module in self.modules.items():
            walk(module.blocks, shown)
        return out

    def declarations(self) -> list[Declared]:
        return self._declarations

    @cached_property
    def _by_name(self) -> dict[str, list[Declared]]:
        out: dict[str, list[Declared]] = {}
        for d in self._declarations:
            out.setdefault(d.name, []).append(d)
        return out

    def declared(self, name: str, kinds: tuple[str, ...] = ()) -> Declared | None:
        """The declaration `name` refers to: of the first of `kinds` that has it, else of any kind."""
        found = self._by_name.get(name, [])
        for kind in kinds:
            for d in found:
                if d.kind == kind:
                    return d
        return found[0] if found else None


def run(path: Path, unsaved: dict[Path, str]) -> Analysis:
    """Check the spec at `path` as `orcac check` would, reading `unsaved` instead of disk."""
    path = path.resolve()
    unit = analyze(path, {p.resolve(): text for p, text in unsaved.items()})
    modules = {item.module.file: item.module for item in unit.loaded or ()}
    return Analysis(path=path, unit=unit, modules=modules)


def referenced_kinds(key: str | None, call: str | None) -> tuple[str, ...]:
    """Which kinds of declaration a name in `key = NAME` (or inside `call(...)`) refers to:
    `strategy = x` and `best_of(x, ...)` a strategy, `tasks = [x]` a task."""
    if call == "best_of":
        return ("strategy",)
    if key in TABLES:
        return (key,)
    if key and key.endswith("s") and key[:-1] in TABLES:
        return (key[:-1],)
    return ()
