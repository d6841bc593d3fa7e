"""Go to definition: a name to the block that declares it, an import to its file.

Across every file the spec reads, the stdlib included (`std/...` opens the file shipped in
orcac/stdlib/).
"""

from __future__ import annotations

from pathlib import Path

from orcac.compiler.load import import_target
from orcac.lsp.analysis import Analysis, Declared, path_of, referenced_kinds
from orcac.lsp.locate import Hit
from orcac.specs.spec import Block, Import, Ref


def definition(analysis: Analysis, hit: Hit) -> tuple[Path, Declared | None] | None:
    """(file, declaration) for what is under the cursor; the declaration is None for an import."""
    node = hit.node
    if isinstance(node, Import):
        target, _, _ = import_target(node.path, analysis.path, analysis.shown, False)
        return (target.resolve(), None) if target.is_file() else None
    if isinstance(node, Ref):
        found = analysis.declared(node.name, referenced_kinds(hit.key, hit.call))
    elif isinstance(node, Block) and hit.on_name:
        found = analysis.declared(node.name, (node.kind,))
    else:
        return None
    return (path_of(found.shown), found) if found else None
