"""Shared paths and runners for the compiler tests, and the goldens of each pass."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*/*.orca") if p.is_file())  # not a .orca/ build folder
MAIN_EXAMPLES = [p for p in EXAMPLES if p.name != "common.orca"]

# Regenerate golden files: ORCAC_UPDATE_GOLDENS=1 .venv/bin/python -m pytest tests/compiler
UPDATE = os.environ.get("ORCAC_UPDATE_GOLDENS") == "1"


def run_cli(*argv: str, cwd: Path = ROOT) -> tuple[int, str, str]:
    """`orcac ARGV` in-process: (exit code, stdout, stderr)."""
    from orcac.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exit:  # argparse
                code = exit.code if isinstance(exit.code, int) else 2
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def golden_compare(path: Path, text: str) -> None:
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            raise AssertionError(f"{path} did not exist; written now, check it and commit it")
        return
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{path} differs; regenerate with ORCAC_UPDATE_GOLDENS=1 if the change is intended"


# The passes with a golden of their own (tests/golden/<pass>/NAME.yaml); lower's is the plan
# file (tests/golden/plan/NAME.plan.yaml), and every pass's errors are the invalid/ goldens.
STAGES = ("load", "resolve", "check")


def stage_goldens(spec: Path, output: Path) -> dict[str, str]:
    """{pass: YAML text} of what `orcac plan` computes up to `check`: load's modules (the
    syntax of each file of the spec's own, the name of each std file), resolve's Spec, check's
    facts about the sources. Paths are relative to the repository; dataclass fields that leave
    themselves out of repr (a source's rows) are left out."""
    import yaml

    from orcac.compiler import Unit, run
    from orcac.specs.diagnostics import Diagnostics

    unit = run(Unit(path=spec, output=output, whole=True, diags=Diagnostics()), until="check")
    loaded = [
        {"path": _relative(str(item.path)), "stdlib": True}
        if item.stdlib
        else {"path": _relative(str(item.path)), "stdlib": False, "module": _data(item.module)}
        for item in unit.loaded
    ]
    outputs = {"load": loaded, "resolve": _data(unit.spec), "check": _data(unit.facts)}
    return {
        name: yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100) for name, value in outputs.items()
    }


def _relative(text: str) -> str:
    root = str(ROOT) + os.sep
    return Path(text[len(root) :]).as_posix() if text.startswith(root) else text


def _data(value):
    """Plain data for YAML: a dataclass as its type and fields, a span as file:line:col-line:col."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__name__ == "Span":
            return f"{_relative(value.file)}:{value.line}:{value.col}-{value.end_line}:{value.end_col}"
        fields = {f.name: _data(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, dict):
        return {str(_data(k)): _data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_data(v) for v in value]
    if isinstance(value, Path):
        return _relative(str(value))
    if isinstance(value, str):
        return _relative(value)
    return value
