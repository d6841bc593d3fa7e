"""Pass `load`: read the main file and every file it imports; reject cycles and missing files.

`import "std/NAME.orca"` reads the library shipped in orcac/stdlib/; any other path is
relative to the importing file. A file imported twice (a diamond) is read once. Files
are shown in diagnostics as the user named them: the main file as given on the command
line, imports joined onto their importer's shown path, the library as `std/...`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orcac.specs.diagnostics import CompileError, Diagnostics, did_you_mean
from orcac.specs.spec import Module

STDLIB = Path(__file__).resolve().parent.parent / "stdlib"


@dataclass(frozen=True)
class Loaded:
    module: Module
    path: Path  # absolute
    stdlib: bool


def load(path: Path, shown: str, diags: Diagnostics, unsaved: Mapping[Path, str] | None = None) -> list[Loaded]:
    """Every module reachable from `path`, dependencies before the files that import them.

    `unsaved` maps absolute paths to text that replaces the file's content on disk: an
    editor's open buffers (orcac/lsp/), checked as the user types."""
    from orcac.grammar import parse

    unsaved = unsaved or {}

    order: list[Loaded] = []
    done: set[Path] = set()
    stack: list[Path] = []
    names: dict[Path, str] = {}

    def visit(p: Path, name: str, stdlib: bool) -> None:
        p = p.resolve()
        if p in done:
            return
        try:
            text = unsaved[p] if p in unsaved else p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            diags.error(f"{name} is not UTF-8 text")
            return
        diags.sources[name] = text
        try:
            module = parse(text, name)
        except CompileError as error:
            diags.items.extend(error.diagnostics)
            done.add(p)
            return
        stack.append(p)
        names[p] = name
        for imp in module.imports:
            if not imp.path.endswith(".orca"):
                # `import "std/erase"`: the .orca left out, not a data file to read
                spelt = import_target(imp.path + ".orca", p, name, stdlib)[0].is_file()
                diags.error(
                    f"cannot import '{imp.path}': only .orca files can be imported",
                    imp.span,
                    f"did you mean {imp.path}.orca?"
                    if spelt
                    else 'a task reads data with from = jsonl("..."), csv("..."), parquet("..."), hf("...") or sql("...")',
                )
                continue
            target, target_name, is_std = import_target(imp.path, p, name, stdlib)
            if target.resolve() in stack:
                cycle = [names[q] for q in stack[stack.index(target.resolve()) :]]
                diags.error(
                    f"import cycle: {' -> '.join([*cycle, target_name])}",
                    imp.span,
                    "move what both files need into a third file that imports neither",
                )
                continue
            if not target.is_file():
                near = None
                if target.parent.is_dir():
                    near = did_you_mean(target.name, [f.name for f in target.parent.glob("*.orca")])
                diags.error(f"cannot find the imported file '{imp.path}'", imp.span, near)
                continue
            visit(target, target_name, is_std)
        stack.pop()
        done.add(p)
        order.append(Loaded(module=module, path=p, stdlib=stdlib))

    if path.is_dir():
        diags.error(f"{shown} is a directory, not a spec", hint=directory_hint(path, shown))
        return []
    if not path.is_file() and path.resolve() not in unsaved:
        diags.error(f"no such file: {shown}")
        return []
    visit(path, shown, False)
    return order


def directory_hint(directory: Path, shown: str) -> str:
    """What to give instead of a directory: the specs in it, if it holds any."""
    specs = sorted(p.name for p in directory.glob("*.orca") if p.is_file())
    if not specs:
        return f"{shown} holds no .orca file; give the path of a spec (a .orca file)"
    listed = ", ".join(posixpath.join(shown, name) for name in specs[:5]) + (", ..." if len(specs) > 5 else "")
    return f"give one of the specs in it: {listed}"


def import_target(target: str, importer: Path, importer_name: str, importer_std: bool) -> tuple[Path, str, bool]:
    """Where `import "target"` in `importer` leads: the file, its shown name, whether it is the stdlib."""
    if target.startswith("std/"):
        return STDLIB / target[4:], target, True
    if importer_std:
        return (
            importer.parent / target,
            posixpath.normpath(posixpath.join(posixpath.dirname(importer_name), target)),
            True,
        )
    shown = posixpath.normpath(posixpath.join(posixpath.dirname(importer_name), target))
    return importer.parent / target, shown, False
