"""Jinja2 for prompts and gold answers: sandboxed, strict, bounded, shared by compiler and runtime.

A template runs once per source row, so whatever it does is multiplied by the data: the
work one row may cost is bounded, the same on every machine (counted, never timed, so a
plan does not depend on how fast the machine is). Per row:

- at most MAX_STEPS loop iterations and calls together;
- `range()` of at most MAX_RANGE numbers;
- every text or list a template builds, and everything it outputs (inside macros and
  `{% set %}` blocks too), at most MAX_TEXT characters; operators that multiply (`*`,
  `**`, `%`, format widths) are refused before they would allocate more;
- the rendered text must be valid Unicode (no lone surrogate from the data).

A row over a bound fails with TemplateLimit, which callers report for that row like any
other template error (`failure_reason`), and the other rows go on.
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar
from functools import lru_cache

import jinja2
from jinja2 import meta, nodes
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

MAX_STEPS = 10_000
MAX_RANGE = 10_000
MAX_TEXT = 1_000_000
MAX_INT_BITS = 1 << 16  # integers a template computes: up to about 20,000 digits

_WIDE_FORMAT = re.compile(r"[%:{][^%{}\s]*?[0-9]{7,}")  # a printf or format width of 1,000,000 or more
_STAR_WIDTH = re.compile(r"%[-#0 +]*\*|%[-#0 +]*[0-9]*\.\*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_STEPS, _TEXT = "__orcac_steps", "__orcac_text"  # filters the loop counter inserts (harmless if a template names them)


class TemplateLimit(SecurityError):
    """A row's template would do more work than orcac allows for one row."""


class RowError(Exception):
    """A source row that is not a row (orcac.sources.problems.BadRow): nothing to render."""


class _Budget:
    __slots__ = ("steps", "chars")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.chars = MAX_TEXT


_budget: ContextVar[_Budget | None] = ContextVar("orcac_template_budget", default=None)


def _spend(steps: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.steps -= steps
        if budget.steps < 0:
            raise TemplateLimit(f"the template does more than {MAX_STEPS:,} loop steps and calls for one row")


def _sized(value):
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_TEXT:
        raise TemplateLimit(f"the template builds a value longer than {MAX_TEXT:,} characters or items")
    return value


def _counted(iterable):
    """What a `for` iterates: a sized collection is paid for up front (Jinja has no `break`),
    anything else item by item."""
    if isinstance(iterable, (list, tuple, range, dict, str)):
        _spend(len(iterable))
        return iterable
    return _each_counted(iterable)


def _each_counted(iterable):
    for item in iterable:
        _spend()
        yield item


def _check_args(args, kwargs) -> None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_TEXT:
            raise TemplateLimit(f"the template asks for a width of {a} (at most {MAX_TEXT:,})")


def _check_growth(name: str, text, args, kwargs=None) -> None:
    """Refuse, before it allocates, a filter or str method whose result can be many times
    the size of its input: replace(), indent(), expandtabs(), join()."""
    kwargs = kwargs or {}
    for i, key in enumerate(
        {"replace": ("old", "new"), "indent": ("width",), "expandtabs": ("tabsize",)}.get(name, ())
    ):
        if key in kwargs and len(args) <= i:
            args = (*args, kwargs[key])
    if name == "replace" and len(args) >= 2 and isinstance(text, str) and all(isinstance(a, str) for a in args[:2]):
        old, new = args[0], args[1]
        size = len(text) + (len(text) + 1 if old == "" else text.count(old)) * (len(new) - len(old))
    elif name == "indent" and isinstance(text, str):
        width = args[0] if args else 4
        size = len(text) + (text.count("\n") + 1) * (
            len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        )
    elif name == "expandtabs" and isinstance(text, str):
        size = len(text) + text.count("\t") * (args[0] if args and isinstance(args[0], int) else 8)
    elif name == "join" and isinstance(text, str) and args and isinstance(args[0], (list, tuple, str)):
        size = len(text) * len(args[0])
    else:
        return
    if size > MAX_TEXT:
        raise TemplateLimit(f"the template's {name}() would build more than {MAX_TEXT:,} characters")


def _check_format(text) -> None:
    if isinstance(text, str) and _WIDE_FORMAT.search(text):
        raise TemplateLimit(f"the template formats with a width of more than {MAX_TEXT:,} characters")


def _safe_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimit(f"range() of {len(numbers):,} numbers (at most {MAX_RANGE:,} in a template)")
    return numbers


def _length(value) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _times(left, right):
    for seq, n in ((left, right), (right, left)):
        if _length(seq) is not None and isinstance(n, int) and _length(seq) * max(n, 0) > MAX_TEXT:
            raise TemplateLimit(f"the template repeats a value to more than {MAX_TEXT:,} characters or items")
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateLimit("the template multiplies integers beyond 20,000 digits")
    return _sized(left * right)


def _power(left, right):
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise TemplateLimit("the template raises a number to a power beyond 20,000 digits")
    return left**right


def _modulo(left, right):
    if isinstance(left, str):
        _check_format(left)
        if _STAR_WIDTH.search(left):  # "%*d" takes its width from the arguments
            _check_args(right if isinstance(right, tuple) else (right,), {})
    return _sized(left % right)


def _plus(left, right):
    return _sized(left + right)


# Filters and str methods that take a width: their numbers are bounded like sizes.
_WIDTHS = {"center", "truncate", "wordwrap", "ljust", "rjust", "zfill", "batch", "slice", "indent", "expandtabs"}


_GROWS = {"format", "join", "replace"}


def _bounded_filter(name: str, f):
    skip = 2 if getattr(f, "jinja_pass_arg", None) is not None else 1  # (environment/context,) value, args

    @functools.wraps(f)
    def run(*args, **kwargs):
        if len(args) >= skip:
            value, rest = args[skip - 1], args[skip:]
            if name in _WIDTHS:
                _check_args(rest, kwargs)
            if name == "format":
                _check_format(value)
            if name == "join":
                items = list(value) if not isinstance(value, (str, list, tuple)) else value
                args = (*args[: skip - 1], items, *rest)
                _check_growth("join", rest[0] if rest else kwargs.get("d", ""), (items,))
            else:
                _check_growth(name, value, rest, kwargs)
        return _sized(f(*args, **kwargs))

    return run


def _bounded_lipsum(
    n: int = 5, html: bool = True, min: int = 20, max: int = 100
) -> str:  # shadows min and max: Jinja's own names for lipsum's arguments
    if n > 100 or max > 1000:
        raise TemplateLimit("lipsum() of more than 100 paragraphs or 1,000 words")
    from jinja2.utils import generate_lorem_ipsum

    return generate_lorem_ipsum(n, html, min, max)


def _finalize(value):
    text = str(value)  # what Jinja would print; StrictUndefined raises here, as it should
    budget = _budget.get()
    if budget is not None:
        budget.chars -= len(text)
        if budget.chars < 0:
            raise TemplateLimit(f"the template outputs more than {MAX_TEXT:,} characters for one row")
    return text


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with every kind of repeated or multiplied work counted (see the module doc)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options):
        super().__init__(**options)
        self.globals["range"] = _safe_range
        self.globals["lipsum"] = _bounded_lipsum
        self.binop_table.update({"*": _times, "**": _power, "%": _modulo, "+": _plus})
        # Only the filters whose result can be many times their input are wrapped (a wrapper
        # costs a third of rendering a short prompt); the rest grow at most linearly, and
        # every `~`, operator and the output are size-checked anyway.
        for name in _WIDTHS | _GROWS:
            if name in self.filters:
                self.filters[name] = _bounded_filter(name, self.filters[name])
        self.filters[_STEPS] = _counted
        self.filters[_TEXT] = _sized

    def call(__self, __context, __obj, *args, **kwargs):  # Jinja's own signature (__self, not self)
        _spend()
        name = getattr(__obj, "__name__", "")
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_counted(args[0]), *args[1:])
        elif isinstance(getattr(__obj, "__self__", None), str):  # a str method
            if name in _WIDTHS:
                _check_args(args, kwargs)
            if name == "join" and args and not isinstance(args[0], (str, list, tuple)):
                args = (list(args[0]), *args[1:])
            _check_growth(name, __obj.__self__, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value):
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped


class _CountLoops(NodeTransformer):
    """Every `for` iterates through a counter; every `~` result is size-checked."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _STEPS, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        return nodes.Filter(node, _TEXT, [], [], None, None, lineno=node.lineno)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    # Sandboxed so a template cannot reach Python internals; StrictUndefined so a
    # missing column is an error for that row rather than silently empty text.
    return _BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        finalize=_finalize,
    )


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    return _compiled(source)[0]


@lru_cache(maxsize=4096)
def _compiled(source: str) -> tuple[jinja2.Template, bool]:
    """The template, and whether it can repeat work (a loop or a call): only then does a
    render need a budget; without either, its work is bounded by its own length."""
    env = environment()
    tree = env.parse(source)
    repeats = any(True for _ in tree.find_all((nodes.For, nodes.Call, nodes.Macro, nodes.CallBlock)))
    return env.from_string(_CountLoops().visit(tree)), repeats


def variables(source: str) -> set[str]:
    """The top-level names a template reads (raises jinja2.TemplateSyntaxError)."""
    return meta.find_undeclared_variables(environment().parse(source))


# Jinja checks filter names when it compiles a template (test names only when it runs one).
_NO_SUCH = re.compile(r"^No (filter) named '([^']*)'")


def unknown_name(error: jinja2.TemplateSyntaxError) -> tuple[str, str, list[str]] | None:
    """For a template that names a filter Jinja does not have (`{{ q | uppr }}`): ("filter",
    the name, the filters there are); else None.

    >>> try:
    ...     variables("{{ q | uppr }}")
    ... except jinja2.TemplateSyntaxError as error:
    ...     kind, name, known = unknown_name(error)
    >>> kind, name, "upper" in known
    ('filter', 'uppr', True)
    """
    found = _NO_SUCH.match(error.message or "")
    if not found:
        return None
    kind, name = found.groups()
    return kind, name, sorted(n for n in environment().filters if not n.startswith("__"))


def render(source: str, row: dict) -> str:
    """One row's text. Raises TemplateLimit past a bound, or whatever the template raised."""
    template, repeats = _compiled(source)
    if repeats:
        token = _budget.set(_Budget())
        try:
            text = template.render(row)
        finally:
            _budget.reset(token)
    else:
        text = template.render(row)
    if len(text) > MAX_TEXT:
        raise TemplateLimit(f"the template outputs more than {MAX_TEXT:,} characters for one row")
    bad = None if text.isascii() else _SURROGATE.search(text)
    if bad:
        raise jinja2.TemplateError(
            f"the rendered text holds a lone surrogate (U+{ord(bad.group()):04X}), which is not valid Unicode"
        )
    return text


def failure_reason(error: BaseException) -> str:
    """Why a row could not be rendered, in one line (the same words for plan and build)."""
    if isinstance(error, (TemplateLimit, RowError)) or type(error) is jinja2.TemplateError:
        reason = str(error)
    else:
        reason = f"{type(error).__name__}: {error}"
    return " ".join(reason.split())
