"""The syntax node under the cursor, with what encloses it.

>>> from orcac.grammar import parse
>>> m = parse('orca 1\\ntask t { strategy = best_of(a, b) }', "x.orca")
>>> hit = at(m, 2, 32)
>>> hit.node.name, hit.key, hit.call, [b.kind for b in hit.blocks]
('b', 'strategy', 'best_of', ['task'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orcac.specs.spec import Assign, Block, Call, KwArg, List, Module, Span


@dataclass
class Hit:
    node: object  # a value (Ref, Str, Call, ...), an Import, a Block (its kind or name), an Assign (its key)
    blocks: list[Block] = field(default_factory=list)  # enclosing blocks, outermost first
    key: str | None = None  # the setting whose value holds the node
    call: str | None = None  # the innermost call whose arguments hold the node
    on_name: bool = False  # a Block hit on its name, not its kind


def contains(span: Span | None, line: int, col: int) -> bool:
    """Is (line, col), 1-based, inside `span` or just after its end (where a cursor rests)?"""
    if span is None:
        return False
    return (span.line, span.col) <= (line, col) <= (span.end_line, span.end_col)


def at(module: Module, line: int, col: int) -> Hit | None:
    """The innermost node at (line, col), 1-based; None between nodes."""
    for imp in module.imports:
        if contains(imp.span, line, col):
            return Hit(node=imp)
    for block in module.blocks:
        if contains(block.span, line, col):
            return _in_block(block, line, col, [])
    return None


def _in_block(block: Block, line: int, col: int, outer: list[Block]) -> Hit | None:
    blocks = [*outer, block]
    if contains(block.kind_span, line, col):
        return Hit(node=block, blocks=outer)
    if contains(block.name_span, line, col):
        return Hit(node=block, blocks=outer, on_name=True)
    for member in block.members:
        if not contains(member.span, line, col):
            continue
        if isinstance(member, Block):
            return _in_block(member, line, col, blocks)
        assert isinstance(member, Assign)
        if contains(member.key_span, line, col):
            return Hit(node=member, blocks=blocks)
        return _in_value(member.value, line, col, Hit(node=None, blocks=blocks, key=member.key))
    return None


def _in_value(value, line: int, col: int, hit: Hit) -> Hit | None:
    if not contains(value.span, line, col):
        return None
    if isinstance(value, Call):
        inner = Hit(node=None, blocks=hit.blocks, key=hit.key, call=value.name)
        for arg in value.args:
            found = _in_value(arg, line, col, inner)
            if found:
                return found
        for kw in value.kwargs:
            found = _in_value(kw.value, line, col, inner) if isinstance(kw, KwArg) else None
            if found:
                return found
    if isinstance(value, List):
        for item in value.items:
            found = _in_value(item, line, col, hit)
            if found:
                return found
    hit.node = value
    return hit
