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
TOKEN = re.compile(
    r'"""(?:[^"]|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9.eE+-]*[%a-z]*|\s+|.', re.S
)
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


@pytest.mark.slow
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


# ---- systematic value swaps ------------------------------------------------------------------------
#
# Every key of every block (as orcac.compiler.to_spec.TABLES lists them) given every kind of
# value, through `check`, `plan` and `build --dry-run`: exit 0 or 1, never an internal error.

VALUE_BASE: dict[str, dict[str, str]] = {
    "teacher t": {
        "model": '"openai/gpt-4o-mini"',
        "api_key": 'env("ORCAC_FUZZ_KEY")',
        "api_base": '"http://127.0.0.1:9/v1"',
        "temperature": "0.5",
        "top_p": "0.9",
        "max_tokens": "64",
        "seed": "1",
        "concurrency": "4",
        "rpm": "60",
        "tpm": "6000",
        "timeout": "30s",
        "max_retries": "1",
        "batch_size": "2",
        "threads": "1",
        "transport": "auto",
        "precision": "auto",
        "adaptive": "true",
        "mode": "online",
    },
    "params": {"user": '"fuzz"'},  # inside teacher t
    "teacher lt": {"model": '"local/smollm2-135m-instruct"'},  # the distill teacher
    "student st": {"model": '"local/smollm2-135m-instruct"', "chat_template": "auto"},
    "strategy s": {"system": '"Be brief."', "expect": "[single_line]"},
    "demonstration": {"user": '"Q: 1"', "assistant": '"2"'},  # inside strategy s
    "strategy other": {"system": '"Think first."'},
    "erase e": {"system": '"You are helpful."'},
    "judge j": {
        "teacher": "t",
        "rubric": '"Q: {{ prompt }} A: {{ answer }} Score: 1-10"',
        "min": "1",
        "max": "10",
        "threshold": "5",
        "read": "score_line",
    },
    "defaults": {
        "teacher": "t",
        "erase": "e",
        "strategy": "s",
        "seed": "1",
        "holdout": "25%",
        "accept": "nonempty",
        "allow_truncated": "false",
        "limit": "8",
        "samples": "1",
        "keep": "1",
        "temperature": "0.5",
    },
    "task a": {
        "from": 'jsonl("d.jsonl")',
        "prompt": '"Q: {{ q }}"',
        "gold": '"{{ a }}"',
        "category": '"c"',
        "teacher": "t",
        "erase": "e",
        "strategy": "best_of(s, other, probe = 2)",
        "accept": "[contains(gold), judged(j)]",
        "allow_truncated": "true",
        "limit": "6",
        "seed": "2",
        "holdout": "20%",
        "samples": "2",
        "keep": "1",
        "temperature": "0.7",
    },
    "task g": {  # answers from the source: no teacher, no strategy
        "from": 'jsonl("d.jsonl")',
        "prompt": '"Q: {{ q }}"',
        "answer": '"{{ a }}"',
        "instruction": '"Reply to {{ q }}."',
    },
    "train": {
        "student": "st",
        "max_length": "128",
        "packing": "true",
        "lr": "1e-4",
        "schedule": "cosine",
        "warmup": "0.1",
        "batch_size": "2",
        "grad_accum": "1",
        "seed": "0",
        "precision": "auto",
        "output": '"out"',
        "keep_stages": "false",
        "objective": "distill",
    },
    "distill": {"teacher": "lt", "beta": "0.5", "on_policy": "10%"},  # inside train
    "lora": {"r": "4", "alpha": "8", "dropout": "0.0", "targets": "[q_proj]"},  # inside train
    "stage one": {"tasks": "[a]", "epochs": "1"},  # inside train
    "eval": {
        "max_new_tokens": "16",
        "batch_size": "2",
        "prompted": "false",
        "judges": "false",
        "benchmarks": "[gsm8k]",
        "benchmark_teachers": "[]",
    },
}
NESTED = {
    "params": "teacher t",
    "demonstration": "strategy s",
    "lora": "train",
    "distill": "train",
    "stage one": "train",
}

# One or two of each kind; what each converter must survive (test_to_spec covers the rest).
SWAPS = [
    # strings: empty, blank, control characters, NUL and ESC escapes, a lone surrogate, a template
    # that fails on every row, a long one
    '""',
    '"   "',
    '"\x1b[2J\x07"',
    '"\\u0000\\u001b"',
    '"\\ud800"',
    '"{{ q // 0 }}"',
    '"' + "y" * 3000 + '"',
    # numbers: zero, negative, fractional, beyond int64, beyond float
    "0",
    "-1",
    "1.5",
    "99999999999999999999999999999",
    "1e400",
    "-1e400",
    # percentages and durations
    "100%",
    "-5%",
    "0s",
    "99999999999999999h",
    # names, lists
    "true",
    "nope",
    "s",
    "[]",
    '[1, "a"]',
    "[[]]",
    # calls
    'env("")',
    "f()",
    'sql("")',
    "sql(\"COPY (SELECT 1) TO 'd.jsonl'\")",
    "best_of(s, other, probe = 99999999999999999999)",
]


def _spec_text(block: str, key: str, value: str) -> str:
    def body(name: str) -> str:
        values = dict(VALUE_BASE[name])
        if name == block:
            values[key] = value
        inner = [f"  {k} = {v}" for k, v in values.items()]
        inner += [f"  {child} {{\n  {body(child)}\n  }}" for child, parent in NESTED.items() if parent == name]
        return "\n".join(inner)

    tops = [name for name in VALUE_BASE if name not in NESTED]
    return "orca 1\n\n" + "\n\n".join(f"{name} {{\n{body(name)}\n}}" for name in tops) + "\n"


def test_the_value_swaps_cover_every_key_of_every_block():
    from orcac.compiler.to_spec import TABLES

    covered: dict[str, set[str]] = {}
    for name, keys in VALUE_BASE.items():
        if name != "params":
            covered.setdefault(name.split()[0], set()).update(keys)
    assert {kind: set(keys) for kind, (_, _, keys, _, _) in TABLES.items()} == covered


def _quiet(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit:  # argparse
            code = exit.code
    return code, err.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("block", [name for name in VALUE_BASE], ids=str)
def test_every_key_given_every_kind_of_value_never_breaks_orcac(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCAC_FUZZ_KEY", raising=False)
    (tmp_path / "d.jsonl").write_text("".join(f'{{"q": "question {i}", "a": "{i}"}}\n' for i in range(12)))
    spec = tmp_path / "fuzz.orca"
    spec.write_text(_spec_text("", "", ""))
    for argv in (("check", "fuzz.orca"), ("plan", "fuzz.orca"), ("build", "fuzz.orca", "--dry-run")):
        assert _quiet(*argv)[0] == 0, f"the base spec must pass {argv[0]}: {_quiet(*argv)[1]}"
    for key in VALUE_BASE[block]:
        for value in SWAPS:
            spec.write_bytes(_spec_text(block, key, value).encode("utf-8", "surrogatepass"))
            for argv in (("check", "fuzz.orca"), ("plan", "fuzz.orca"), ("build", "fuzz.orca", "--dry-run")):
                code, err = _quiet(*argv)
                assert code in (0, 1), f"{block}.{key} = {value!r}: {argv[0]} exited {code}\n{err}"
                assert "Traceback" not in err and "internal error" not in err, (
                    f"{block}.{key} = {value!r}: {argv[0]}\n{err}"
                )
                if code and argv[0] == "check":
                    break  # plan and build stop at the same pass (tests/compiler/test_golden.py)
            (tmp_path / "d.jsonl").write_text("".join(f'{{"q": "question {i}", "a": "{i}"}}\n' for i in range(12)))
