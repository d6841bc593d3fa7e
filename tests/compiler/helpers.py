"""Shared paths and runners for the compiler tests."""

from __future__ import annotations

import contextlib
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
