"""A real headless Chromium (Debian's `chromium` package) for tests that open a page from disk.

    page = load(path, tmp_path, fragment="verdict=rejected")
    page.dom        # the DOM after the page's own script ran (--dump-dom)
    page.console    # every console message and uncaught error (--enable-logging=stderr)

No DevTools client: Chromium's own command-line switches give the DOM, the console and a
screenshot, which is all these tests need.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

TIMEOUT_S = 60


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require() -> str:
    found = executable()
    if found is None:
        pytest.skip("no chromium on PATH: install Debian's package (`apt-get install chromium`; .ci/run does)")
    return found


@dataclass
class Page:
    dom: str
    console: list[str]
    seconds: float  # the whole browser run: start, load, script, dump


def _flags(profile: Path) -> list[str]:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]


def load(path: Path, scratch: Path, *, fragment: str = "") -> Page:
    """Open `path` (file://) and return its DOM after scripts ran, and its console."""
    url = Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    started = time.monotonic()
    done = subprocess.run(
        [require(), *_flags(scratch / "chromium-profile"), "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    return Page(done.stdout, console_lines(done.stderr), seconds)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]


def screenshot(path: Path, scratch: Path, out: Path, *, size: str = "1400,2400") -> Path:
    subprocess.run(
        [
            require(),
            *_flags(scratch / "chromium-profile"),
            f"--window-size={size}",
            "--hide-scrollbars",
            f"--screenshot={out}",
            Path(path).resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    assert out.is_file() and out.stat().st_size > 10_000, "chromium wrote no screenshot"
    return out
