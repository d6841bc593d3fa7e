"""The settings table (orcac/specs/settings.py) stays true: against what to_spec accepts and
fills in, the declarations, the Plan models, resolve's fallbacks and docs/language.md."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from orcac.compiler import analyze
from orcac.compiler.to_spec import ARGS, TABLES, to_spec_module
from orcac.grammar import parse
from orcac.specs import plan, settings
from orcac.specs import spec as spec_models
from orcac.specs.diagnostics import Diagnostics

from .helpers import ROOT

BLOCKS = tuple(TABLES)
KEYS = list(settings.KEYS)

# The plan model that holds each block's or call's keys.
PLAN_MODELS = {
    "teacher": plan.TeacherPlan,
    "student": plan.StudentPlan,
    "strategy": plan.StrategyPlan,
    "demonstration": plan.DemonstrationPlan,
    "erase": plan.ErasePlan,
    "judge": plan.JudgePlan,
    "task": plan.TaskPlan,
    "train": plan.TrainPlan,
    "lora": plan.LoraPlan,
    "distill": plan.DistillPlan,
    "stage": plan.StagePlan,
    "eval": plan.EvalPlan,
    "best_of()": plan.ProbePlan,
    "numeric()": plan.CheckRule,
    "hf()": plan.SourcePlan,
    "sql()": plan.SourcePlan,
    "regex()": plan.AdherenceRule,
}

# Plan fields that hold no key: each is computed by lower, or is a name or a nested block.
COMPUTED = {
    plan.TeacherPlan: {"name", "params"},
    plan.StudentPlan: {"name"},
    plan.StrategyPlan: {"name", "demonstrations", "origin"},
    plan.DemonstrationPlan: set(),
    plan.ErasePlan: {"name", "origin"},
    plan.JudgePlan: {"name", "origin"},
    plan.TaskPlan: {"name", "system", "probe", "sampling", "counts"},
    plan.SamplingPlan: {"seeds"},
    plan.TrainPlan: {"loss", "lora", "distill", "stages"},
    plan.LoraPlan: set(),
    plan.DistillPlan: set(),
    plan.StagePlan: {"name", "train_examples", "examples", "portions"},  # portions: from `tasks`
    plan.EvalPlan: set(),
    plan.ProbePlan: {"candidates", "key", "decision"},
    plan.CheckRule: {"kind", "pattern"},
    plan.SourcePlan: {"kind", "path", "repo", "commit", "query", "files", "sha256", "columns", "rows"},
    plan.AdherenceRule: {"kind", "pattern", "value"},
}

# Keys whose default is not their plan field's, and why.
OTHER_PLAN_DEFAULT = {
    ("numeric()", "tol"): "CheckRule holds every kind of check; its tolerance is None for the kinds that take none",
}

# The declaration (orcac.specs.spec) of each call's keyword arguments.
CALL_MODELS = {
    "best_of()": spec_models.BestOf,
    "numeric()": spec_models.CheckExpr,
    "hf()": spec_models.SourceExpr,
    "sql()": spec_models.SourceExpr,
    "regex()": spec_models.FormRule,
}

# A written value for every keyword argument of a call, in a spec that uses it.
CALL_SAMPLES = {
    (
        "best_of()",
        "by",
    ): 'task a { from = jsonl("d.jsonl") prompt = "p" gold = "g" strategy = best_of(x, y, by = accept) }',
    (
        "best_of()",
        "probe",
    ): 'task a { from = jsonl("d.jsonl") prompt = "p" gold = "g" strategy = best_of(x, y, probe = 3) }',
    ("numeric()", "tol"): 'task a { from = jsonl("d.jsonl") prompt = "p" accept = numeric(gold, tol = 0.5) }',
    ("hf()", "split"): 'task a { from = hf("data/ds", split = "test") prompt = "p" }',
    ("hf()", "config"): 'task a { from = hf("org/ds", config = "main") prompt = "p" }',
    ("hf()", "revision"): 'task a { from = hf("org/ds", revision = "v1") prompt = "p" }',
    ("sql()", "network"): 'task a { from = sql("SELECT 1 AS q", network = true) prompt = "p" }',
    ("regex()", "why"): 'strategy s { system = "x" expect = regex("A", why = "says A") }',
}


def _plan_field(key: settings.Key):
    """The pydantic field of `key.plan_name`, following a dotted name into nested records."""
    model = PLAN_MODELS[key.block]
    *records, name = key.plan_name.split(".")
    for record in records:
        model = model.model_fields[record].annotation
    assert name in model.model_fields, f"{key.block} {key.name}: {model.__name__} has no field {name!r}"
    return model, model.model_fields[name]


def _to_spec(text: str):
    diags = Diagnostics()
    decls = to_spec_module(parse("orca 1\n" + text, "t.orca"), diags)
    return decls, diags


def _wrapped(kind: str, body: str) -> str:
    """A block of `kind` holding `body`, inside the block it nests in."""
    if kind == "demonstration":
        return f'strategy s {{ system = "x" demonstration {{ {body} }} }}'
    if kind in ("lora", "distill"):
        return f"train {{ student = s {kind} {{ {body} }} }}"
    if kind == "stage":
        return f"train {{ student = s stage one {{ {body} }} }}"
    named = TABLES[kind][1]
    return f"{kind} {'n ' if named else ''}{{ {body} }}"


@pytest.mark.parametrize("kind", BLOCKS)
def test_a_block_takes_exactly_the_tables_keys_in_its_order(kind):
    _, diags = _to_spec(_wrapped(kind, "qqqqqqqq = 1"))
    [hint] = [d.hint for d in diags.items if d.message.startswith("unknown key 'qqqqqqqq'")]
    assert hint == f"{kind} keys are: {', '.join(k.name for k in settings.keys(kind))}"


@pytest.mark.parametrize("kind", BLOCKS)
def test_a_block_requires_exactly_the_tables_required_keys(kind):
    _, diags = _to_spec(_wrapped(kind, ""))
    needed = [m.group(1) for d in diags.items if (m := re.fullmatch(rf".*{kind}.* needs '(\w+)'", d.message))]
    assert needed == [k.name for k in settings.keys(kind) if k.required]


def test_every_call_argument_is_in_the_table_and_accepted():
    table = {(k.block, k.name) for k in KEYS if k.block in settings.CALLS}
    assert set(CALL_SAMPLES) == table
    assert {call: list(args) for call, args in ARGS.items()} == {
        call: [k.name for k in settings.keys(call)] for call in settings.CALLS
    }
    for (call, name), text in CALL_SAMPLES.items():
        _, diags = _to_spec(text)
        assert not diags.items, (call, name, diags.items)
        _, diags = _to_spec(text.replace(f"{name} =", "qqqqqqqq ="))
        assert [d.message for d in diags.items] == [f"{call} has no argument 'qqqqqqqq'"]


@pytest.mark.parametrize("kind", BLOCKS)
def test_a_declaration_has_a_field_for_each_key_and_no_other(kind):
    model, _, _, _, nested = TABLES[kind]
    fields = {f.name for f in dataclasses.fields(model)} - {"span", "spans", "origin", "name"}
    nested_fields = {"params", "demonstrations", "lora", "distill", "stages"}
    assert fields - nested_fields == {k.field for k in settings.keys(kind)}


def test_a_calls_declaration_has_a_field_for_each_argument():
    for call, model in CALL_MODELS.items():
        fields = {f.name for f in dataclasses.fields(model)}
        missing = {k.field for k in settings.keys(call)} - fields
        assert not missing, (call, missing)


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{k.block}.{k.name}")
def test_every_plan_name_is_a_field_of_the_plan(key):
    _plan_field(key)


def test_every_plan_field_holds_a_key_or_is_computed():
    held: dict[type, set[str]] = {model: set() for model in COMPUTED}
    for key in KEYS:
        model, _ = _plan_field(key)
        held[model].add(key.plan_name.rsplit(".", 1)[-1])
    for model, computed in COMPUTED.items():
        assert not held[model] & computed, model.__name__
        assert set(model.model_fields) == held[model] | computed, model.__name__


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{k.block}.{k.name}")
def test_a_key_named_otherwise_in_the_plan_says_why(key):
    if key.renamed:
        assert len(key.why_renamed.strip()) > 20, f"{key.block} {key.name} -> {key.plan_name}: write down why"
    else:
        assert not key.why_renamed, f"{key.block} {key.name} is not renamed"


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{k.block}.{k.name}")
def test_a_keys_default_and_doc_are_its_plan_fields(key):
    _, field = _plan_field(key)
    if field.is_required():  # the plan always holds a value lower computed (a name, a path, a choice)
        assert not key.doc
        return
    assert field.description == (key.doc or None)
    if (key.block, key.name) not in OTHER_PLAN_DEFAULT:
        assert field.default == key.default and type(field.default) is type(key.default)


@pytest.mark.parametrize("key", [k for k in KEYS if k.type.kind == "choice"], ids=lambda k: f"{k.block}.{k.name}")
def test_a_choice_is_its_plan_fields_literal(key):
    _, field = _plan_field(key)
    assert typing.get_args(field.annotation) == key.type.options


@pytest.mark.parametrize("key", [k for k in KEYS if k.default is not None], ids=lambda k: f"{k.block}.{k.name}")
def test_a_default_is_a_value_the_key_takes(key):
    t, value = key.type, key.default
    if t.kind in ("integer", "number"):
        assert isinstance(value, int if t.kind == "integer" else float)
        assert (
            (t.lo is None or value >= t.lo) and (t.hi is None or value <= t.hi) and (t.above is None or value > t.above)
        )
    elif t.kind == "choice":
        assert value in t.options
    elif t.kind == "fraction":
        assert 0.0 <= value <= 1.0
    elif t.kind in ("duration",):
        assert value > 0
    elif t.kind == "boolean":
        assert isinstance(value, bool)
    else:
        assert isinstance(value, tuple), (key, value)


MINIMAL = {
    "teacher": 'teacher t { model = "m" }',
    "student": 'student s { model = "m" }',
    "strategy": 'strategy s { system = "x" }',
    "erase": 'erase e { system = "x" }',
    "train": "train { student = s lora { } stage one { tasks = [a] } }",
    "eval": "eval { }",
}


def test_to_spec_fills_in_every_default_but_a_tasks():
    decls, diags = _to_spec("\n".join(MINIMAL.values()) + '\ntask a { from = jsonl("d.jsonl") prompt = "p" }')
    assert not diags.items
    found = {kind: decls[kind][0] for kind in MINIMAL}
    found["lora"], found["stage"] = found["train"].lora, found["train"].stages[0]
    for kind, decl in found.items():
        for key in settings.keys(kind):
            if not key.required:
                assert getattr(decl, key.field) == key.default, (kind, key.name)
    task = decls["task"][0]
    assert all(getattr(task, k.field) is None for k in settings.keys("task") if not k.required)  # resolve's to fill


def test_resolve_falls_back_to_the_tables_defaults(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "hi"}\n')
    spec = tmp_path / "s.orca"
    spec.write_text(
        'orca 1\nteacher t { model = "local/m" }\nstrategy s { system = "x" }\nerase e { system = "y" }\n'
        'task a { from = jsonl("d.jsonl") prompt = "{{ q }}" }\n'
    )
    task = analyze(spec).spec.tasks[0]
    for key in settings.keys("defaults"):
        if key.name not in ("teacher", "erase", "strategy"):
            assert getattr(task, key.field) == key.default, key.name


def test_the_defaults_block_takes_task_keys():
    task = {k.name for k in settings.keys("task")}
    assert set(settings.DEFAULTS) <= task and len(set(settings.DEFAULTS)) == len(settings.DEFAULTS)


def test_the_docs_list_every_key_named_otherwise_in_the_plan():
    doc = (ROOT / "docs" / "language.md").read_text()
    section = doc.split("### Names in the plan", 1)[1].split("\n#", 1)[0]
    rows = set(re.findall(r"^\| (\S+) \| `(\w+)` \| `([\w.]+)` \|", section, re.M))
    assert rows == {(k.block, k.name, k.plan_name) for k in KEYS if k.renamed}


def test_the_docs_say_numerics_default_tolerance():
    """The checks table shows `tol = 0.01` as an example; the default it states is the table's."""
    doc = (ROOT / "docs" / "language.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `numeric(gold)`"))
    default = settings.key("numeric()", "tol").default
    stated = re.search(r"`tol` defaults to ([0-9.e+-]+)", row)
    assert stated and float(stated.group(1)) == default, row
