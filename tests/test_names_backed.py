"""Every module the docs, docstrings and comments name is a file that exists: after files move,
a stale name (`transport.py`, `orcac.runtime.build.probe`) fails here instead of misleading a reader."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    "README.md",
    "ARCHITECTURE.md",
    "BENCHMARKS.md",
    *(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
]
SLASHED = re.compile(r"(?<![\w./-])((?:orcac|tests|benchmarks|examples)/[\w/.-]*\w)")
DOTTED = re.compile(r"(?<![\w./-])(orcac(?:\.\w+)+)")
BARE = re.compile(r"(?<![\w/.-])(\w+\.py)\b")
# Files of other projects that the text names as such.
ELSEWHERE = {"setup.py", "conftest.py", "modeling_llama.py", "sdft.py", "cascade.py"}
SETTINGS = {"orcac.path"}  # the VS Code extension's setting, not a module


def _texts():
    for name in DOCS:
        yield name, (ROOT / name).read_text(encoding="utf-8")
    for path in sorted((ROOT / "orcac").rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def _dotted_exists(name: str) -> bool:
    """orcac.a.b.c names a module or package, or something defined in one (`orcac.stats.wilson`,
    `orcac.runtime.context.RunContext.recompile`: the first name past the module is checked)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            if end == len(parts):
                return True
            inside = parts[end]
            text = source.read_text(encoding="utf-8")
            return (
                bool(re.search(rf"^\s*(?:class |def |async def )?{inside}\b", text, re.M)) or (base / inside).exists()
            )
    return False


def test_every_named_module_exists():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    basenames = {Path(p).name for p in tracked} | {p.name for p in ROOT.rglob("*.py") if ".venv" not in p.parts}
    stale = []
    for where, text in _texts():
        for path in set(SLASHED.findall(text)):
            clean = path.rstrip(".")
            if "*" in clean or "{" in clean or "NAME" in clean:
                continue
            if not (ROOT / clean).exists():
                stale.append(f"{where}: {clean}")
        for name in set(DOTTED.findall(text)) - SETTINGS:
            if not _dotted_exists(name.rstrip(".")):
                stale.append(f"{where}: {name}")
        for name in set(BARE.findall(text)):
            if name not in basenames and name not in ELSEWHERE:
                stale.append(f"{where}: {name}")
    assert not stale, "names no file backs:\n" + "\n".join(sorted(stale))
