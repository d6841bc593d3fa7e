"""The VS Code extension (editors/vscode/): its TextMate grammar's scopes, the grammar on every
shipped spec, and the extension packaged with vsce. The npm tools come from the committed
package-lock.json (`npm ci`); without node and npm, or without the registry, these skip."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orcac.compiler.to_spec import CHECK_KINDS, SOURCE_KINDS, TABLES

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"
GRAMMAR = EXTENSION / "syntaxes" / "orca.tmLanguage.json"

pytestmark = pytest.mark.xdist_group("npm")  # one worker runs npm ci, once

_OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network", re.I)


# Every test that takes npm_tools is marked slow: `npm ci` first, then node per test.
@pytest.fixture(scope="module")
def npm_tools() -> Path:
    """editors/vscode/node_modules installed exactly from package-lock.json (once per lock)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.skip(
            "node and npm are not installed; the editor extension's tests need them (apt-get install nodejs npm)"
        )
    lock = hashlib.sha256((EXTENSION / "package-lock.json").read_bytes()).hexdigest()
    stamp = EXTENSION / "node_modules" / ".orcac-lock-sha256"
    # One installer at a time, whatever the xdist distribution: `npm ci` first deletes
    # node_modules, so a second worker's install (or a test reading a half-installed tree)
    # fails with ENOTEMPTY, ENOTDIR or an unparsable file.
    with open(ROOT / ".pytest-npm.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (stamp.is_file() and stamp.read_text() == lock):
            # --ignore-scripts: no install script of any dependency runs on this machine
            done = subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                cwd=EXTENSION,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                if _OFFLINE.search(done.stderr):
                    pytest.skip(f"npm cannot reach its registry: {last}")
                pytest.fail(f"npm ci failed in {EXTENSION}:\n{done.stderr[-3000:]}")
            stamp.write_text(lock)
    return EXTENSION / "node_modules" / ".bin"


def run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=EXTENSION, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.slow
def test_grammar_scopes(npm_tools: Path):
    tests = sorted((EXTENSION / "tests" / "grammar").glob("*.test.orca"))
    assert len(tests) >= 3
    done = run([npm_tools / "vscode-tmgrammar-test", *[t.relative_to(EXTENSION) for t in tests]])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run successfuly") == len(tests), done.stdout


@pytest.mark.slow
def test_grammar_scope_tests_can_fail(npm_tools: Path, tmp_path: Path):
    wrong = tmp_path / "wrong.test.orca"
    wrong.write_text('# SYNTAX TEST "source.orca"\nteacher t {\n# <------- string.quoted.double.orca\n}\n')
    done = run([npm_tools / "vscode-tmgrammar-test", wrong])
    assert done.returncode != 0 and "missing required scopes: string.quoted.double.orca" in done.stdout


@pytest.mark.slow
def test_grammar_reads_every_shipped_spec_without_invalid_tokens(npm_tools: Path):
    folders = [ROOT / "examples", ROOT / "orcac" / "stdlib", ROOT / "tests" / "golden" / "orca"]
    done = run(["node", "tests/no-invalid.js", *folders])
    assert done.returncode == 0, done.stdout + done.stderr
    files = len([p for f in folders for p in f.rglob("*.orca") if p.is_file()])  # not a .orca/ build folder
    assert f"{files} files tokenized, 0 invalid tokens" in done.stdout


@pytest.mark.slow
def test_invalid_tokens_are_reported(npm_tools: Path, tmp_path: Path):
    (tmp_path / "bad.orca").write_text('orca 1\nteacher t { model = "x"; }\ntsak t { }\n')
    done = run(["node", "tests/no-invalid.js", tmp_path])
    assert done.returncode == 1
    assert 'bad.orca:2:24: ";" is invalid.illegal.character.orca' in done.stderr
    assert 'bad.orca:3:1: "tsak" is invalid.illegal.unknown-block.orca' in done.stderr


@pytest.mark.slow
def test_extension_packages_with_vsce(npm_tools: Path, tmp_path: Path):
    vsix = tmp_path / "orcac.vsix"
    done = run([npm_tools / "vsce", "package", "--allow-missing-repository", "-o", vsix])
    assert done.returncode == 0, done.stdout + done.stderr
    names = set(zipfile.ZipFile(vsix).namelist())
    for name in ("package.json", "extension.js", "language-configuration.json", "syntaxes/orca.tmLanguage.json"):
        assert f"extension/{name}" in names
    assert "extension/node_modules/vscode-languageclient/node.js" in names  # the client ships inside
    assert not any(n.startswith(("extension/tests/", "extension/node_modules/vscode-tmgrammar-test/")) for n in names)


def test_the_extension_starts_orcac_lsp_from_its_setting(tmp_path: Path):
    if not shutil.which("node"):
        pytest.skip("node is not installed (apt-get install nodejs)")
    orcac = tmp_path / ".venv" / "bin" / "orcac"
    orcac.parent.mkdir(parents=True)
    orcac.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m orcac.cli "$@"\n')
    orcac.chmod(0o755)
    done = run(["node", "tests/activate.js", tmp_path, "${workspaceFolder}/.venv/bin/orcac"])
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout)
    assert started["serverOptions"]["command"] == str(orcac) and started["serverOptions"]["args"] == ["lsp"]
    assert started["clientOptions"]["documentSelector"] == [{"scheme": "file", "language": "orca"}]

    # What vscode-languageclient runs for a stdio server: the command, its args, then --stdio.
    server = subprocess.Popen(
        [started["serverOptions"]["command"], *started["serverOptions"]["args"], "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _send(
            server,
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}},
        )
        capabilities = _receive(server)["result"]["capabilities"]
        _send(server, {"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
        _receive(server)
        _send(server, {"jsonrpc": "2.0", "method": "exit"})
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    for provider in ("hoverProvider", "definitionProvider", "documentFormattingProvider", "completionProvider"):
        assert provider in capabilities, provider


def _send(server: subprocess.Popen, message: dict) -> None:
    body = json.dumps(message).encode()
    server.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    server.stdin.flush()


def _receive(server: subprocess.Popen) -> dict:
    while True:  # skip notifications (log messages) until a response
        length = 0
        while (line := server.stdout.readline().strip()) != b"":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        message = json.loads(server.stdout.read(length))
        if "id" in message:
            return message


def test_manifest_names_files_that_exist():
    manifest = json.loads((EXTENSION / "package.json").read_text())
    contributes = manifest["contributes"]
    paths = [
        manifest["main"],
        *(g["path"] for g in contributes["grammars"]),
        *(lang["configuration"] for lang in contributes["languages"]),
    ]
    assert all((EXTENSION / p).is_file() for p in paths), paths
    assert contributes["languages"][0]["extensions"] == [".orca"]
    config = json.loads((EXTENSION / "language-configuration.json").read_text())
    assert config["comments"] == {"lineComment": "#"}
    assert {"open": '"""', "close": '"""', "notIn": ["string", "comment"]} in config["autoClosingPairs"]


def test_grammar_knows_the_compilers_block_kinds_and_builtins():
    grammar = json.loads(GRAMMAR.read_text())
    header = grammar["repository"]["block-header"]["patterns"][0]["match"]
    kinds = set(re.search(r"\\b\(([a-z_|]+)\)", header).group(1).split("|"))
    compiler = set(TABLES) | {k for table in TABLES.values() for k in table[4]}
    assert kinds == compiler, (
        f"update block-header in {GRAMMAR.relative_to(ROOT)}: the compiler's kinds are {sorted(compiler)}"
    )
    builtins = grammar["repository"]["call"]["beginCaptures"]["1"]["patterns"][0]["match"]
    named = set(re.search(r"\(\?:([a-z_|]+)\)", builtins).group(1).split("|"))
    assert set(SOURCE_KINDS) | set(CHECK_KINDS) <= named
