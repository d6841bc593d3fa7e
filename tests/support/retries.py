"""The teachers' retry backoff shrunk for tests, so a retried fault costs milliseconds, not seconds.

`tests/conftest.py` offers it as the `fast_backoff` fixture; a module-scoped fixture (one
build shared by a module's tests) calls `fast_backoff(mp)` with its own MonkeyPatch.
"""

from __future__ import annotations

import pytest

BASE_S = 0.01  # teachers.BACKOFF_BASE_S is 0.5
CAP_S = 0.05  # teachers.BACKOFF_CAP_S is 30


def fast_backoff(mp: pytest.MonkeyPatch) -> None:
    from orcac.runtime.teachers import calls as teachers

    mp.setattr(teachers, "BACKOFF_BASE_S", BASE_S)
    mp.setattr(teachers, "BACKOFF_CAP_S", CAP_S)
