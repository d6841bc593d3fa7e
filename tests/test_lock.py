"""requirements.lock is the install: every dependency locked with hashes, and the venv is exactly it."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line).group(1))


def locked() -> dict[str, str]:
    """name -> version, checking on the way that every pin carries at least one sha256."""
    pins: dict[str, str] = {}
    text = LOCK.read_text()
    for match in re.finditer(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M
    ):
        name, version, hashes = match.groups()
        assert hashes, f"{name}=={version} has no --hash in requirements.lock"
        pins[canonical(name)] = version
    return pins


def test_every_pin_is_exact_and_hashed():
    pins = locked()
    entries = [line for line in LOCK.read_text().splitlines() if line and not line[0].isspace() and line[0] not in "#-"]
    assert len(entries) == len(pins), "a requirement in the lock is not an exact `name==version` with hashes"
    assert pins["torch"] == "2.13.0+cpu"  # the CPU build: the PyPI one pulls CUDA


def test_the_lock_names_no_machine_path():
    """The lock installs on any machine: no local wheel folder, no index of this machine in it
    (the Makefile says where torch's CPU build comes from: test below)."""
    for number, line in enumerate(LOCK.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        assert not re.search(r"(^|\s)(/|~|file:)|--find-links|--index-url|--extra-index-url", line), (
            f"requirements.lock:{number}: {line.strip()}: a lock names no path or index of one machine"
        )


@pytest.mark.parametrize("has_torch_wheel", [False, True])
def test_setup_takes_torch_from_a_wheel_folder_or_else_the_pytorch_cpu_index(tmp_path, has_torch_wheel):
    """Without a local folder holding torch, PyTorch's CPU index; with one (CI), only the folder:
    the index is then not named at all, so where it cannot be reached it costs no retries."""
    if has_torch_wheel:
        (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    shown = subprocess.run(
        ["make", "-n", "-B", "setup", f"WHEELS={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    install = next(line for line in shown.splitlines() if "--require-hashes" in line)
    if has_torch_wheel:
        assert f"--find-links {tmp_path} " in install and "download.pytorch.org" not in shown
    else:
        assert "--extra-index-url https://download.pytorch.org/whl/cpu " in install and "--find-links" not in install


def test_every_declared_dependency_is_locked():
    """A dependency added to pyproject.toml or lock/extra.in without `make lock` fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    extra_in = (ROOT / "lock" / "extra.in").read_text().splitlines()
    declared += [line.split("#")[0] for line in extra_in if line.split("#")[0].strip()]
    missing = sorted({requirement_name(r) for r in declared} - set(locked()))
    assert not missing, f"not in requirements.lock: {missing}: run `make lock`"


def test_the_venv_has_exactly_the_locked_versions():
    marker = Path(sys.prefix) / ".locked"
    if not marker.is_file():
        pytest.skip(f"{sys.prefix} was not built by `make setup` (no .locked marker), so it need not match the lock")
    assert marker.read_text().strip() == hashlib.sha256(LOCK.read_bytes()).hexdigest(), (
        "this venv was built from another requirements.lock: run `make setup`"
    )
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {}
    for line in frozen.splitlines():
        name, _, version = line.partition("==")
        installed[canonical(name)] = version
    assert installed == locked()


@pytest.mark.xdist_group("lock")
def test_loadgroup_still_groups(request: pytest.FixtureRequest):
    """`make test` runs `--dist loadgroup` so that a group's tests share one worker (one `npm ci`,
    one loopback server). pytest 9.2 with pytest-xdist 3.8 dropped the group silently
    (pytest-xdist#1386): under loadgroup every grouped test's node id must carry its group."""
    if not request.config.getoption("loadgroup", False):
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith("@lock"), (
        f"{request.node.nodeid}: --dist loadgroup no longer groups tests; pin pytest below the "
        "version that broke it in pyproject.toml, then `make lock`"
    )
