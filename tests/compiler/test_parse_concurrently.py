"""Parsing is reentrant: the language server parses several buffers on several threads, and each
parse's spans and comments are its own (they once lived in class attributes shared by all)."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, is_dataclass

from orcac.grammar import parse
from orcac.specs.spec import Span


def _spec(n: int) -> str:
    body = "\n".join(f'  key{i} = "value {i}"  # comment {n}.{i}' for i in range(40))
    return f"orca 1\n# file {n}\nteacher t{n} {{\n{body}\n}}\n"


def _span_files(node, found: set[str]) -> set[str]:
    if isinstance(node, Span):
        found.add(node.file)
    elif isinstance(node, tuple):
        for item in node:
            _span_files(item, found)
    elif is_dataclass(node):
        for f in fields(node):
            _span_files(getattr(node, f.name), found)
    return found


def _parse_many(n: int) -> list[str]:
    problems = []
    for _ in range(30):
        module = parse(_spec(n), f"spec{n}.orca")
        files = _span_files(module, set())
        if files != {f"spec{n}.orca"}:
            problems.append(f"spec{n}.orca has spans in {sorted(files)}")
        comments = {c.text for c in module.comments}
        expected = {f"# file {n}"} | {f"# comment {n}.{i}" for i in range(40)}
        if comments != expected:
            problems.append(
                f"spec{n}.orca has {len(comments - expected)} foreign comments, lacks {len(expected - comments)}"
            )
    return problems


def test_parses_on_several_threads_keep_their_own_files_and_comments():
    with ThreadPoolExecutor(max_workers=6) as pool:
        problems = [p for result in pool.map(_parse_many, range(6)) for p in result]
    assert not problems, problems[:5]
