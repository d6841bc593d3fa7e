"""Pass `to_spec`: syntax blocks -> typed declarations, checking kinds, keys and value types.

Each block kind has a table `key -> (field, converter)`, made from the settings table
(orcac/specs/settings.py); a converter turns one syntax value into a Python value or raises
`Bad` (or `Partial`: a list with bad items, what is left of it still checked). Every problem
is collected, not only the first.

>>> from orcac.grammar import parse
>>> from orcac.specs.diagnostics import Diagnostics
>>> m = parse('orca 1\\nteacher t { model = "local/x" temperature = 0.5 }', "a.orca")
>>> decls = to_spec_module(m, Diagnostics())
>>> decls["teacher"][0].temperature
0.5
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, cast

from orcac.specs import settings
from orcac.specs.diagnostics import Diagnostics, did_you_mean
from orcac.specs.forms import FORMS
from orcac.specs.spec import (
    Assign,
    BestOf,
    Block,
    Call,
    CheckExpr,
    CheckKind,
    DefaultsDecl,
    DemonstrationDecl,
    DistillDecl,
    Duration,
    EraseDecl,
    EvalDecl,
    FormKind,
    FormRule,
    JudgeDecl,
    List,
    LoraDecl,
    Module,
    Named,
    Num,
    Percent,
    Portion,
    Ref,
    SourceExpr,
    SourceKind,
    Span,
    StageDecl,
    Str,
    StrategyDecl,
    StudentDecl,
    TaskDecl,
    TeacherDecl,
    TrainDecl,
    Value,
)

LANGUAGE_VERSIONS = (1,)


class Bad(Exception):
    def __init__(self, message: str, span=None, hint: str | None = None):
        super().__init__(message)
        self.message, self.span, self.hint = message, span, hint


class Partial(Exception):
    """A list value with bad items: each is reported, and `value`, what is left of the list
    (a bad item kept at its plain name), stands in for it so that the names in it are still
    checked: `[math(150%), intent]` reports the share and the unknown task together."""

    def __init__(self, problems: list[Bad], value):
        super().__init__(problems[0].message)
        self.problems, self.value = problems, value


def describe(v: Value) -> str:
    if isinstance(v, Str):
        return "a string"
    if isinstance(v, Num):
        return f"the number {v.raw}"
    if isinstance(v, Percent):
        return f"the percentage {v.raw}"
    if isinstance(v, Duration):
        return f"the duration {v.raw}"
    if isinstance(v, Ref):
        return f"the name '{v.name}'"
    if isinstance(v, Call):
        return f"a call to {v.name}()"
    return "a list"


# ---- converters ---------------------------------------------------------------------------------

Converter = Callable[[Value, str], Any]


def string(v: Value, key: str) -> str:
    if not isinstance(v, Str):
        raise Bad(f"'{key}' must be a string, got {describe(v)}", v.span, 'write it in quotes: "..."')
    return v.value


def text(v: Value, key: str) -> str:
    s = string(v, key)
    if not s.strip():
        raise Bad(f"'{key}' is empty", v.span)
    return s


def path(v: Value, key: str) -> str:
    """A file or directory name: text without control characters (a NUL cannot name a file)."""
    s = text(v, key)
    bad = next((c for c in s if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise Bad(f"'{key}' must be a path, and a path holds no control character (it has U+{ord(bad):04X})", v.span)
    return s


def urls(v: Value, key: str) -> str | tuple[str, ...]:
    """One server's URL, or a list of replicas of one model (one element: just that URL)."""
    if not isinstance(v, List):
        return text(v, key)
    if not v.items:
        raise Bad(f"'{key}' lists no servers", v.span, f'write {key} = "http://host:8000/v1" or a list of them')
    bases = tuple(text(item, key) for item in v.items)
    for n, base in enumerate(bases):
        if base in bases[:n]:
            raise Bad(f"'{base}' is listed twice", v.items[n].span)
    return bases[0] if len(bases) == 1 else bases


def integer(lo: float | None = None, hi: float | None = None) -> Converter:
    def convert(v: Value, key: str) -> int:
        if not isinstance(v, Num) or not isinstance(v.value, int):
            raise Bad(f"'{key}' must be a whole number, got {describe(v)}", v.span)
        _range(v, key, v.value, lo, hi)
        return v.value

    return convert


def number(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Converter:
    def convert(v: Value, key: str) -> float:
        if not isinstance(v, Num):
            raise Bad(f"'{key}' must be a number, got {describe(v)}", v.span)
        value = float(v.value)
        if above is not None and not value > above:
            raise Bad(f"'{key}' must be more than {above:g}, got {v.raw}", v.span)
        _range(v, key, value, lo, hi)
        return value

    return convert


def _range(v: Num, key: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo or hi is not None and value > hi:
        bounds = (
            f"between {lo:g} and {hi:g}"
            if lo is not None and hi is not None
            else (f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
        )
        raise Bad(f"'{key}' must be {bounds}, got {v.raw}", v.span)


def fraction(v: Value, key: str) -> float:
    """A share: 20% or 0.2."""
    if isinstance(v, Percent):
        value, raw = v.value, v.raw
    elif isinstance(v, Num):
        value, raw = float(v.value), v.raw
    else:
        raise Bad(f"'{key}' must be a percentage like 20%, got {describe(v)}", v.span)
    if not 0.0 <= value <= 1.0:
        hint = f"did you mean {raw}%?" if isinstance(v, Num) and 1 < value <= 100 else None
        raise Bad(f"'{key}' must be between 0% and 100%, got {raw}", v.span, hint)
    return value


def duration(v: Value, key: str) -> float:
    if isinstance(v, Duration):
        seconds = v.seconds
    elif isinstance(v, Num):
        seconds = float(v.value)
    else:
        raise Bad(f"'{key}' must be a duration like 30s, got {describe(v)}", v.span)
    if seconds <= 0:
        raise Bad(f"'{key}' must be longer than 0s", v.span)
    return seconds


def boolean(v: Value, key: str) -> bool:
    if isinstance(v, Ref) and v.name in ("true", "false"):
        return v.name == "true"
    raise Bad(f"'{key}' must be true or false, got {describe(v)}", v.span)


def choice(*options: str) -> Converter:
    def convert(v: Value, key: str) -> str:
        name = v.name if isinstance(v, Ref) else v.value if isinstance(v, Str) else None
        if name not in options:
            raise Bad(
                f"'{key}' must be one of {', '.join(options)}, got {describe(v)}",
                v.span,
                did_you_mean(name, options) if name else None,
            )
        return name

    return convert


def ref(v: Value, key: str) -> Named:
    if not isinstance(v, Ref) or v.name in ("true", "false"):
        hint = None
        if isinstance(v, Str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v.value):
            hint = f"a name is written without quotes: {key} = {v.value}"
        raise Bad(f"'{key}' must name a declaration, got {describe(v)}", v.span, hint)
    return Named(name=v.name, span=v.span)


def ref_list(v: Value, key: str) -> tuple[Named, ...]:
    if isinstance(v, Ref):
        return (ref(v, key),)
    if not isinstance(v, List):
        raise Bad(f"'{key}' must be a list of names like [a, b], got {describe(v)}", v.span)
    return tuple(ref(item, key) for item in v.items)


def portions(v: Value, key: str) -> tuple[Portion, ...]:
    """A stage's tasks: names, each maybe called with its portion, `easy(30%)` or `hard(500)`.
    Raises Partial when an item's portion is bad (every such item reported)."""
    items = v.items if isinstance(v, List) else (v,)
    if not isinstance(v, (List, Ref, Call)):
        raise Bad(f"'{key}' must be a list of task names like [a, b(30%), c(500)], got {describe(v)}", v.span)
    out = []
    problems = []
    for item in items:
        if isinstance(item, Ref):
            out.append(Portion(name=ref(item, key).name, span=item.span))
            continue
        if not isinstance(item, Call):
            raise Bad(f"'{key}' must list task names, got {describe(item)}", item.span)
        try:
            out.append(_portion(item, key))
        except Bad as bad:
            problems.append(bad)
            out.append(Portion(name=item.name, span=item.span))
    if problems:
        raise Partial(problems, tuple(out))
    return tuple(out)


def _portion(item: Call, key: str) -> Portion:
    if item.kwargs or len(item.args) != 1:
        raise Bad(
            f"{item.name}(...) in '{key}' takes one portion: a share like {item.name}(30%) or a count like {item.name}(500)",
            item.span,
        )
    (amount,) = item.args
    if isinstance(amount, Percent):
        if amount.value > 1.0:
            raise Bad(
                f"{item.name}({amount.raw}) asks for more than all of task '{item.name}'",
                amount.span,
                f"a stage takes at most 100% of a task's records: write {item.name}(100%), or just {item.name}; "
                "to train on them more than once, raise the stage's epochs",
            )
        if amount.value < 0.0:
            raise Bad(f"{item.name}({amount.raw}): a share of a task's records is between 0% and 100%", amount.span)
        if amount.value == 0.0:
            raise Bad(f"{item.name}(0%) takes nothing", amount.span, f"leave {item.name} out of the stage")
        return Portion(name=item.name, span=item.span, share=amount.value)
    if isinstance(amount, Num) and isinstance(amount.value, int) and amount.value >= 1:
        return Portion(name=item.name, span=item.span, at_most=amount.value)
    raise Bad(
        f"{item.name}(...) in '{key}' takes a share like 30% or a whole number of records of at least 1, "
        f"got {describe(amount)}",
        amount.span,
    )


def names(v: Value, key: str) -> tuple[str, ...]:
    if not isinstance(v, List):
        raise Bad(f"'{key}' must be a list, got {describe(v)}", v.span)
    out = []
    for item in v.items:
        if isinstance(item, Ref):
            out.append(item.name)
        elif isinstance(item, Str) and item.value:
            out.append(item.value)
        else:
            raise Bad(f"'{key}' must list names, got {describe(item)}", item.span)
    return tuple(out)


def env(v: Value, key: str) -> str:
    if isinstance(v, Str):
        raise Bad(
            f"'{key}' must not hold a secret: write env(\"NAME\") to read it from the environment",
            v.span,
            'for example: api_key = env("OPENAI_API_KEY")',
        )
    if isinstance(v, Call) and v.name == "env" and len(v.args) == 1 and isinstance(v.args[0], Ref):
        name = v.args[0].name
        raise Bad(
            f"env() takes the variable's name as a string, got the name {name}",
            v.args[0].span,
            f'write it in quotes: env("{name}")',
        )
    if not isinstance(v, Call) or v.name != "env" or len(v.args) != 1 or v.kwargs or not isinstance(v.args[0], Str):
        raise Bad(
            f"'{key}' must be env(\"NAME\"), got {describe(v)}", v.span, 'for example: api_key = env("OPENAI_API_KEY")'
        )
    name = v.args[0].value
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise Bad(f"'{name}' is not an environment variable name", v.args[0].span)
    return name


def _args(call: Call, positional: int, keywords: dict[str, Converter], what: str) -> tuple[list[Value], dict]:
    if len(call.args) != positional:
        plural = "s" if positional != 1 else ""
        raise Bad(f"{what} takes {positional} argument{plural}, got {len(call.args)}", call.span)
    kw = {}
    for k in call.kwargs:
        if k.name not in keywords:
            hint = did_you_mean(k.name, keywords)
            raise Bad(f"{call.name}() has no argument '{k.name}'", k.span, hint)
        if k.name in kw:
            raise Bad(f"'{k.name}' is given twice", k.span)
        kw[k.name] = keywords[k.name](k.value, k.name)
    return list(call.args), kw


SOURCE_KINDS = ("jsonl", "csv", "parquet", "hf", "sql")


def source(v: Value, key: str) -> SourceExpr:
    if not isinstance(v, Call) or v.name not in SOURCE_KINDS:
        hint = did_you_mean(v.name, SOURCE_KINDS) if isinstance(v, (Call, Ref)) else None
        raise Bad(
            f'\'{key}\' must be a source: jsonl(".."), csv(".."), parquet(".."), hf(".."), or sql(".."); got {describe(v)}',
            v.span,
            hint,
        )
    call = f"{v.name}()"
    (arg,), kw = _args(v, 1, ARGS.get(call, {}), call)
    if v.name == "sql":
        return SourceExpr(kind="sql", query=text(arg, call), span=v.span, **_filled(call, kw))
    return SourceExpr(kind=cast(SourceKind, v.name), path=path(arg, call), span=v.span, **_filled(call, kw))


CHECK_KINDS = ("contains", "exact", "numeric", "regex", "nonempty", "follows", "judged", "no_echo")


def _strategy_arg(call: Call) -> None:
    if len(call.args) != 1 or call.kwargs or not (isinstance(call.args[0], Ref) and call.args[0].name == "strategy"):
        raise Bad(
            "follows() checks the answer against its strategy's expected form: write follows(strategy)",
            call.span,
        )


def _judge_arg(call: Call) -> Named:
    """judged(NAME): the judge declaration that scores the answer."""
    if len(call.args) != 1 or call.kwargs or not isinstance(call.args[0], Ref):
        hint = None
        if len(call.args) == 1 and isinstance(call.args[0], Str):
            hint = f"a name is written without quotes: judged({call.args[0].value})"
        raise Bad(
            "judged() names the judge that scores the answer: write judged(NAME)",
            call.span,
            hint or 'declare one with: judge NAME { teacher = ... rubric = "..." threshold = ... }',
        )
    return ref(call.args[0], "judged()")


def _gold_arg(call: Call) -> None:
    if len(call.args) != 1 or not (isinstance(call.args[0], Ref) and call.args[0].name == "gold"):
        raise Bad(f"{call.name}() compares with the gold answer: write {call.name}(gold)", call.span)


def _regex(v: Value, what: str) -> str:
    pattern = string(v, what)
    try:
        re.compile(pattern)
    except re.error as error:
        raise Bad(f"not a valid regular expression: {error}", v.span) from None
    return pattern


def check(v: Value, key: str) -> CheckExpr:
    if isinstance(v, Ref) and v.name in ("nonempty", "no_echo"):
        return CheckExpr(kind=cast(CheckKind, v.name), span=v.span)
    if not isinstance(v, Call) or v.name not in CHECK_KINDS:
        name = v.name if isinstance(v, (Ref, Call)) else None
        raise Bad(
            f"'{key}' must be a check: contains(gold), exact(gold), numeric(gold), regex(\"..\"), follows(strategy), judged(NAME) "
            f"or nonempty; got {describe(v)}",
            v.span,
            did_you_mean(name, CHECK_KINDS) if name else None,
        )
    if v.name in ("nonempty", "no_echo"):
        _args(v, 0, {}, f"{v.name}()")
        return CheckExpr(kind=cast(CheckKind, v.name), span=v.span)
    if v.name == "regex":
        (arg,), _ = _args(v, 1, {}, "regex()")
        return CheckExpr(kind="regex", pattern=_regex(arg, "regex()"), span=v.span)
    if v.name == "follows":
        _strategy_arg(v)
        return CheckExpr(kind="follows", span=v.span)
    if v.name == "judged":
        return CheckExpr(kind="judged", judge=_judge_arg(v), span=v.span)
    if v.name == "numeric":
        _gold_arg(v)
        _, kw = _args(v, 1, ARGS["numeric()"], "numeric()")
        return CheckExpr(kind="numeric", uses_gold=True, span=v.span, **_filled("numeric()", kw))
    _gold_arg(v)
    return CheckExpr(kind=cast(CheckKind, v.name), uses_gold=True, span=v.span)


def checks(v: Value, key: str) -> tuple[CheckExpr, ...]:
    if isinstance(v, List):
        return tuple(check(item, key) for item in v.items)
    return (check(v, key),)


def strategy(v: Value, key: str) -> Named | BestOf:
    if isinstance(v, Call) and v.name == "best_of":
        cands = []
        for arg in v.args:
            cands.append(ref(arg, "best_of()"))
        if len(cands) < 2:
            raise Bad("best_of() needs at least two strategies to choose from", v.span)
        seen = set()
        for c in cands:
            if c.name in seen:
                raise Bad(f"'{c.name}' is listed twice", c.span)
            seen.add(c.name)
        _, kw = _args(v, len(v.args), ARGS["best_of()"], "best_of()")
        return BestOf(candidates=tuple(cands), span=v.span, **_filled("best_of()", kw))
    if isinstance(v, Call):
        raise Bad(
            f"'{key}' must name a strategy or be best_of(...), got {describe(v)}",
            v.span,
            did_you_mean(v.name, ["best_of"]),
        )
    return ref(v, key)


def form(v: Value, key: str) -> FormRule:
    if isinstance(v, Ref):
        if v.name not in FORMS:
            raise Bad(
                f"unknown answer form '{v.name}'",
                v.span,
                did_you_mean(v.name, FORMS)
                or f'built-in forms: {", ".join(FORMS)}; or regex(".."), max_words(N), min_words(N)',
            )
        pattern, description = FORMS[v.name]
        return FormRule(kind="regex", pattern=pattern, description=description)
    if isinstance(v, Call) and v.name == "regex":
        (arg,), kw = _args(v, 1, ARGS["regex()"], "regex()")
        pattern = _regex(arg, "regex()")
        return FormRule(kind="regex", pattern=pattern, description=kw.get("why", f"matches /{pattern}/"))
    if isinstance(v, Call) and v.name in ("max_words", "min_words"):
        (arg,), _ = _args(v, 1, {}, f"{v.name}()")
        n = integer(1)(arg, f"{v.name}()")
        word = "at most" if v.name == "max_words" else "at least"
        return FormRule(kind=cast(FormKind, v.name), value=n, description=f"{word} {n} words")
    name = v.name if isinstance(v, Call) else None
    raise Bad(
        f"'{key}' must list answer forms, got {describe(v)}",
        v.span,
        did_you_mean(name, [*FORMS, "regex", "max_words", "min_words"]) if name else None,
    )


def forms(v: Value, key: str) -> tuple[FormRule, ...]:
    if isinstance(v, List):
        return tuple(form(item, key) for item in v.items)
    return (form(v, key),)


# ---- block tables ----------------------------------------------------------------------------------

# A key's type (orcac/specs/settings.py) -> the converter that checks it.
_CONVERTERS: dict[str, Converter] = {
    "text": text,
    "string": string,
    "path": path,
    "urls": urls,
    "env": env,
    "fraction": fraction,
    "duration": duration,
    "boolean": boolean,
    "ref": ref,
    "refs": ref_list,
    "portions": portions,
    "names": names,
    "source": source,
    "checks": checks,
    "forms": forms,
    "strategy": strategy,
}


def converter(t: settings.Type) -> Converter:
    if t.kind == "integer":
        return integer(t.lo, t.hi)
    if t.kind == "number":
        return number(t.lo, t.hi, above=t.above)
    if t.kind == "choice":
        return choice(*t.options)
    return _CONVERTERS[t.kind]


def _keys(block: str) -> dict[str, tuple[str, Converter]]:
    return {k.name: (k.field, converter(k.type)) for k in settings.keys(block)}


# The keyword arguments each call takes: {call: {name: converter}}.
ARGS: dict[str, dict[str, Converter]] = {
    call: {name: convert for name, (_, convert) in _keys(call).items()} for call in settings.CALLS
}


def _filled(call: str, kw: dict) -> dict:
    """A call's keyword arguments as declaration fields, each one not written at its default."""
    return {k.field: kw.get(k.name, k.default) for k in settings.keys(call)}


# kind -> (model, named?, nested blocks {kind: named?}); the keys are settings.keys(kind)
BLOCKS: dict[str, tuple[type, bool, dict[str, bool]]] = {
    "teacher": (TeacherDecl, True, {"params": False}),
    "student": (StudentDecl, True, {}),
    "strategy": (StrategyDecl, True, {"demonstration": False}),
    "demonstration": (DemonstrationDecl, False, {}),
    "erase": (EraseDecl, True, {}),
    "judge": (JudgeDecl, True, {}),
    "defaults": (DefaultsDecl, False, {}),
    "task": (TaskDecl, True, {}),
    "train": (TrainDecl, False, {"lora": False, "distill": False, "stage": True}),
    "lora": (LoraDecl, False, {}),
    "distill": (DistillDecl, False, {}),
    "stage": (StageDecl, True, {}),
    "eval": (EvalDecl, False, {}),
}

# kind -> (model, named?, {key: (field, converter)}, required keys, {nested kind: named?})
Table = tuple[type, bool, dict[str, tuple[str, Converter]], tuple[str, ...], dict[str, bool]]

TABLES: dict[str, Table] = {
    kind: (model, named, _keys(kind), tuple(k.name for k in settings.keys(kind) if k.required), nested)
    for kind, (model, named, nested) in BLOCKS.items()
}

# Blocks whose unwritten keys stay None here: resolve fills them (a task's, after `defaults`).
RESOLVED_LATER = ("task", "defaults")

TOP_LEVEL = ("teacher", "student", "strategy", "erase", "judge", "defaults", "task", "train", "eval")


def to_spec_module(module: Module, diags: Diagnostics) -> dict[str, list]:
    """Declarations of one module by kind; problems go to `diags`.

    A named declaration with a bad value is left out, but its (kind, name) is listed under
    "broken", so that what refers to it is not also reported as naming nothing. A defaults
    block with a bad value keeps its good ones (every key of it is optional).
    """
    out: dict[str, list] = {kind: [] for kind in TOP_LEVEL}
    out["broken"] = []
    if module.version is None:
        from orcac.specs.spec import Span

        diags.error(
            "the file does not start with a language version line",
            Span(file=module.file, line=1, col=1, end_line=1, end_col=2),
            "start the file with: orca 1",
        )
    elif module.version not in LANGUAGE_VERSIONS:
        diags.error(
            f"unknown language version {module.version}",
            module.version_span,
            f"this orcac reads language version {', '.join(map(str, LANGUAGE_VERSIONS))}",
        )
    for block in module.blocks:
        if block.kind not in TOP_LEVEL:
            hint = did_you_mean(block.kind, TOP_LEVEL) or f"declarations are: {', '.join(TOP_LEVEL)}"
            diags.error(f"unknown declaration '{block.kind}'", block.kind_span, hint)
            meant = difflib.get_close_matches(block.kind, TOP_LEVEL, n=1, cutoff=0.6)
            if meant and block.name is not None:  # `teachr t`: tasks using teacher t are not also errors
                out["broken"].append((meant[0], block.name))
            continue
        decl = _block(block, diags, module.file)
        if decl is not None:
            out[block.kind].append(decl)
        elif block.name is not None:
            out["broken"].append((block.kind, block.name))
    return out


def _block(block: Block, diags: Diagnostics, file: str):
    model, named, keys, required, nested = TABLES[block.kind]
    where = f"{block.kind} '{block.name}'" if block.name else block.kind
    if named and block.name is None:
        diags.error(f"{block.kind} needs a name", block.kind_span, f"write: {block.kind} NAME {{ ... }}")
        return None
    if not named and block.name is not None:
        diags.error(f"{block.kind} takes no name", block.name_span, f"write: {block.kind} {{ ... }}")
        return None
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    children: dict[str, list] = {k: [] for k in nested}
    params: dict[str, Any] = {}
    ok = True
    for member in block.members:
        if isinstance(member, Block):
            if member.kind not in nested:
                hint = did_you_mean(member.kind, [*nested, *keys])
                if member.kind in keys:
                    hint = f"write {member.kind} = ..."
                diags.error(f"{where} has no block '{member.kind}'", member.kind_span, hint)
                ok = False
                continue
            if member.kind == "params":
                p = _params(member, diags)
                if p is None:
                    ok = False
                elif params:
                    diags.error("a second params block", member.kind_span)
                    ok = False
                else:
                    params = p
                continue
            child = _block(member, diags, file)
            if child is None:
                ok = False
            else:
                children[member.kind].append(child)
            continue
        assert isinstance(member, Assign)
        if member.key not in keys:
            inner = next((kind for kind in nested if kind != "params" and member.key in TABLES[kind][2]), None)
            if member.key in nested:
                hint = f"{member.key} is a block: {member.key} {{ ... }}"
            elif inner is not None:  # `train { epochs = 2 }`: a stage's key, written one level up
                written = f"{member.key} = {getattr(member.value, 'raw', '...')}"
                hint = f"{member.key} belongs in each {inner} block: {inner}{' NAME' if nested[inner] else ''} {{ ... {written} }}"
            else:
                hint = did_you_mean(member.key, keys) or f"{block.kind} keys are: {', '.join(keys)}"
            diags.error(f"unknown key '{member.key}' in {where}", member.key_span, hint)
            ok = False
            continue
        field, convert = keys[member.key]
        if field in values or member.key in spans:
            diags.error(
                f"'{member.key}' is set twice in {where}",
                member.key_span,
                f"first set at line {spans[member.key].line}",
            )
            ok = False
            continue
        spans[member.key] = member.value.span
        try:
            values[field] = convert(member.value, member.key)
        except Partial as partial:  # reported; what is left of the value keeps the block for resolve's checks
            for bad in partial.problems:
                diags.error(bad.message, bad.span or member.value.span, bad.hint)
            values[field] = partial.value
        except Bad as bad:
            diags.error(bad.message, bad.span or member.value.span, bad.hint)
            ok = False
    for key in required:
        if key not in spans:
            diags.error(f"{where} needs '{key}'", block.name_span or block.kind_span, f"add: {key} = ...")
            ok = False
    if not ok and block.kind != "defaults":
        return None
    if block.kind not in RESOLVED_LATER:
        for setting in settings.keys(block.kind):
            values.setdefault(setting.field, setting.default)
    if params:
        values["params"] = params
    if block.kind == "strategy":
        values["demonstrations"] = tuple(children["demonstration"])
    if block.kind == "train":
        loras = children["lora"]
        for extra in loras[1:]:
            diags.error("a second lora block", extra.span)
            return None
        values["lora"] = loras[0] if loras else None
        distills = children["distill"]
        for extra in distills[1:]:
            diags.error("a second distill block", extra.span)
            return None
        values["distill"] = distills[0] if distills else None
        values["stages"] = tuple(children["stage"])
    if named:
        values["name"] = block.name
    return model(span=block.name_span or block.kind_span, spans=spans, origin=f"{file}:{block.span.line}", **values)


def _params(block: Block, diags: Diagnostics) -> dict | None:
    if block.name is not None:
        diags.error("params takes no name", block.name_span)
        return None
    out: dict[str, str | int | float | bool] = {}
    ok = True
    for member in block.members:
        if isinstance(member, Block):
            diags.error("params holds only key = value", member.kind_span)
            ok = False
            continue
        v = member.value
        if isinstance(v, Str):
            out[member.key] = v.value
        elif isinstance(v, Num):
            out[member.key] = v.value
        elif isinstance(v, Ref) and v.name in ("true", "false"):
            out[member.key] = v.name == "true"
        else:
            diags.error(f"'{member.key}' must be a string, number, true or false, got {describe(v)}", v.span)
            ok = False
    return out if ok else None
