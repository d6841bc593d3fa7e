"""Benchmarks, each a module run from the repository root: `.venv/bin/python -m benchmarks.bench_check`.

Run as modules, they import `orcac` and the test support code (`tests.support`) as the tests do,
with no change to sys.path; `python -m benchmarks.run_all` (`make bench`) runs them all.
"""
