"""Thousands of mutated specs through `orcac check` in-process: exit 0 or 1, never a traceback.

Mutations work on tokens of real specs (examples and goldens): deletions, duplications,
swaps, replacements by other tokens, and random bytes. Derandomized, so a failure
reproduces; about 2,000 cases in well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orcac.cli import main

from .helpers import EXAMPLES, GOLDEN

SEEDS = [p for p in [*EXAMPLES, *sorted((GOLDEN / "orca").glob("*.orca"))] if p.name != "common.orca"]
TOKEN = re.compile(r'"""(?:[^"]|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9.eE+-]*[%a-z]*|\s+|.', re.S)
TOKENS = {p: TOKEN.findall(p.read_text()) for p in SEEDS}
VOCAB = sorted({t for ts in TOKENS.values() for t in ts if not t.isspace()})


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """Per seed spec: a scratch directory whose entries link to the spec's own (data, imports)."""
    dirs = {}
    for p in SEEDS:
        d = tmp_path_factory.mktemp(p.stem)
        for entry in p.parent.iterdir():
            os.symlink(entry, d / entry.name)
        dirs[p] = d
    return dirs


@st.composite
def mutated(draw):
    seed = draw(st.sampled_from(SEEDS))
    tokens = list(TOKENS[seed])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "bytes"]))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap" and i + 1 < len(tokens):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        elif op == "replace":
            tokens[i] = draw(st.sampled_from(VOCAB))
        else:
            raw = draw(st.binary(min_size=1, max_size=6))
            tokens.insert(i, raw.decode("latin-1"))
        if not tokens:
            tokens = [""]
    return seed, "".join(tokens)


@settings(max_examples=2000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(case=mutated())
def test_mutated_specs_exit_0_or_1(case, workdirs):
    seed, text = case
    path = workdirs[seed] / "fuzz.orca"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path)])
    assert code in (0, 1), err.getvalue()
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()
