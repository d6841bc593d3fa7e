"""The benchmarks against other engines load in orcac's venv alone and say in one line what they
miss: benchmarks/bench_vllm.py never imports vLLM (it lives in a venv of its own and runs as a
subprocess), benchmarks/bench_llama_cpp.py runs a llama-server built by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_vllm", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_without_vllm():
    done = _bench("--help")
    assert done.returncode == 0, done.stderr
    assert "--vllm-python" in done.stdout


def test_a_missing_vllm_python_is_one_line(tmp_path):
    done = _bench("--vllm-python", str(tmp_path / "nowhere/bin/python"))
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "--vllm-python" in done.stderr


def test_bench_llama_cpp_without_a_built_server_is_one_line(tmp_path):
    """benchmarks/bench_llama_cpp.py: llama.cpp is built by hand, never a dependency."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_llama_cpp", "--llama-server", str(tmp_path / "llama-server")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "--llama-server" in done.stderr
