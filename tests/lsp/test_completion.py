"""Where the cursor is in half-typed text: a key position, a value position, or inside a
string or comment (no completion). The text before the cursor is all `context` sees."""

from __future__ import annotations

import pytest

from orcac.compiler.to_spec import TABLES
from orcac.lsp.completion import complete, context

CASES = [
    ("orca 1\n", [], "key", None, None),
    ("orca 1\ntask t {\n  ", ["task"], "key", None, None),
    ('orca 1\ntask t {\n  prompt = "x"\n  str', ["task"], "key", None, None),
    ("orca 1\ntask t { strategy = st", ["task"], "value", "strategy", None),
    ("orca 1\ntask t { strategy = best_of(a, ", ["task"], "value", "strategy", "best_of"),
    ("orca 1\ntrain {\n  lr = 5e-5 lora {\n  ", ["train", "lora"], "key", None, None),
    ("orca 1\ntrain {\n  stage s { tasks = [\n    a,\n    ", ["train", "stage"], "value", "tasks", None),
    ("orca 1\ntrain {\n  stage s { tasks = [a] }\n  ", ["train"], "key", None, None),
    ('orca 1\ntask t { prompt = "{{ x', ["task"], "none", "prompt", None),
    ('orca 1\ntask t { prompt = """\n  {{ x }} { ', ["task"], "none", "prompt", None),
    ('orca 1\ntask t { prompt = """ { """\n  ', ["task"], "key", None, None),
    ("orca 1\ntask t { # a comment {", ["task"], "none", None, None),
]


@pytest.mark.parametrize("text, blocks, where, key, call", CASES)
def test_context(text, blocks, where, key, call):
    ctx = context(text)
    assert (ctx.blocks, ctx.where) == (blocks, where)
    if where == "value":
        assert (ctx.key, ctx.call) == (key, call)


def test_keys_come_from_the_compilers_table():
    labels = [item.label for item in complete("orca 1\nteacher t {\n  ", None)]
    assert labels == [*TABLES["teacher"][2], *TABLES["teacher"][4]]


def test_values_offer_the_built_ins_the_key_takes():
    assert {"exact", "contains", "regex"} <= {i.label for i in complete("orca 1\ntask t { accept = ", None)}
    assert {"true", "false"} == {i.label for i in complete("orca 1\ntrain { packing = ", None)}
