"""Fixtures shared by every test directory. The code behind them lives in tests/support/.

- `fast_backoff`: teachers retry after milliseconds, not seconds (tests/support/retries.py).
- `tiny`: the directory of the tiny random Llama, built once per machine (tests/support/tiny_model.py).
- `clock`: a fake clock, for code that sleeps, to install on the module under test (tests/support/clock.py).

Plans built by hand are in tests/support/plans.py, database reads in tests/support/db.py.

The model cache (dequantised GGUF models, orcac.runtime.models.loading) is the tests' own,
beside the tiny model, so a test run never writes to the user's ~/.cache.

The machine's answer cache (orcac/runtime/store/answer_cache.py) is off: tests count the
loopback teacher's requests per database, and answers shared across tests would make those
counts depend on which tests ran before. A test of the cache turns it on in its own tmp folder
(`answer_cache` below).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import retries
from tests.support.clock import FakeClock
from tests.support.tiny_model import cache_root

os.environ.setdefault("ORCAC_CACHE_DIR", str(cache_root() / "orcac-model-cache"))
os.environ["ORCAC_ANSWER_CACHE"] = "off"


@pytest.fixture
def answer_cache(tmp_path, monkeypatch) -> Path:
    """The answer cache on, in this test's own folder (its file: the folder / answers.sqlite3)."""
    folder = tmp_path / "answer-cache"
    monkeypatch.setenv("ORCAC_ANSWER_CACHE", str(folder))
    return folder


@pytest.fixture
def fast_backoff(monkeypatch) -> None:
    retries.fast_backoff(monkeypatch)


@pytest.fixture(scope="session")
def tiny() -> Path:
    from tests.support.tiny_model import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
