"""Writing what a run keeps so that a kill at any moment leaves a model that loads.

Every `final/` (the student's and each stage's) and every state file is written beside the
old one and renamed into place once complete; `put_back` tidies what a kill between the two
renames left. `disk_line` says what the run keeps on disk.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from orcac.runtime.training.layout import FINAL_DIR, STAGES_DIR


def write_beside(target: Path, write) -> None:
    """`write(directory)` into a directory beside `target`, renamed into place once complete;
    the old `target` is removed only after. A kill leaves the old one or the new one, whole."""
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    try:
        write(partial)
        old = old_copy(target)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        partial.rename(target)
    finally:
        put_back(target)


def put_back(target: Path) -> None:
    """Tidy what `write_beside` left when stopped: its partial copies, and the old `target`,
    put back if the kill came between its two renames (else removed)."""
    old = old_copy(target)
    if old.is_dir():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(target)
    for partial in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def old_copy(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def write_text_beside(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def disk_line(output: Path, final: Path, *, keep_stages: bool) -> str:
    """`out/student holds 540 MB: final/ 538 MB, ...`: what the run keeps on disk."""
    stages = output / STAGES_DIR
    line = f"{output} holds {size_text(_disk_use(output))}: {FINAL_DIR}/ {size_text(_disk_use(final))}"
    if keep_stages:
        return line + f", {STAGES_DIR}/ {size_text(_disk_use(stages))} (keep_stages = true)"
    return line + f"; each stage's weights were dropped once {FINAL_DIR}/ was written (keep_stages = true keeps them)"


def size_text(size: int) -> str:
    """
    >>> size_text(538_000_000), size_text(3_400), size_text(2_500_000_000)
    ('538 MB', '3.4 kB', '2.5 GB')
    """
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


def _disk_use(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
