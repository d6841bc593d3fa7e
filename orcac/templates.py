"""Jinja2 for prompts and gold answers: sandboxed, strict, shared by compiler and runtime."""

from __future__ import annotations

from functools import lru_cache

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    # Sandboxed so a template cannot reach Python internals; StrictUndefined so a
    # missing column is an error for that row rather than silently empty text.
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    return environment().from_string(source)


def variables(source: str) -> set[str]:
    """The top-level names a template reads (raises jinja2.TemplateSyntaxError)."""
    return meta.find_undeclared_variables(environment().parse(source))


def render(source: str, row: dict) -> str:
    return compile_template(source).render(row)
