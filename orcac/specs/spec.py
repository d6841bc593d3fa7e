"""The Spec: what the user wrote, as typed frozen dataclasses, every node with its source span.

Two layers, one naming chain (grammar rule -> transformer method -> model):

- syntax nodes (`Module`, `Block`, `Assign` and the values `Str`, `Num`, `Percent`,
  `Duration`, `Ref`, `Call`, `List`) come straight from the parse tree
  (orcac/grammar/__init__.py); the grammar has one generic block shape;
- declarations (`TeacherDecl`, `TaskDecl`, `TrainDecl`, ...) are built from blocks by
  the `to_spec` pass, which checks kinds, keys and value types.

The compiler passes after `to_spec` read only declarations. They never see Lark trees.

Why dataclasses and not pydantic (the Plan, orcac/specs/plan.py, is pydantic): the spec
is never validated by a schema; `to_spec` checks every value itself, with positions and
"did you mean". Defining even one pydantic model costs `orcac check` tens of
milliseconds of pydantic's internals, which alone took check from 1.3x to 1.9x the time
of `import lark, pydantic, jinja2` (see BENCHMARKS.md). The plan pays that cost only in
`orcac plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, dataclass_transform

FormKind = Literal["regex", "max_words", "min_words"]
SourceKind = Literal["jsonl", "csv", "parquet", "hf", "sql"]
CheckKind = Literal["contains", "exact", "numeric", "regex", "nonempty", "follows", "judged", "no_echo"]


# Two dataclass shapes, named once; dataclass_transform tells type checkers what they make.
@dataclass_transform(frozen_default=True)
def _node(cls):
    return dataclass(frozen=True, slots=True)(cls)


@dataclass_transform(frozen_default=True, kw_only_default=True)
def _decl(cls):
    return dataclass(frozen=True, kw_only=True)(cls)


@_node
class Span:
    """Where a node is: `file` as shown to the user, 1-based line and column, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


# ---- syntax: values ---------------------------------------------------------------------


@_node
class Str:
    value: str
    raw: str  # the token as written, quotes included
    span: Span
    triple: bool = False


@_node
class Num:
    value: int | float
    raw: str
    span: Span


@_node
class Percent:
    value: float  # 20% -> 0.2
    raw: str
    span: Span


@_node
class Duration:
    seconds: float  # 30s -> 30.0, 500ms -> 0.5, 2m -> 120.0
    raw: str
    span: Span


@_node
class Ref:
    name: str
    span: Span


@_node
class KwArg:
    name: str
    value: Value
    span: Span


@_node
class Call:
    name: str
    span: Span
    args: tuple = ()
    kwargs: tuple = ()


@_node
class List:
    span: Span
    items: tuple = ()


Value = Str | Num | Percent | Duration | Ref | Call | List


# ---- syntax: structure -------------------------------------------------------------------


@_node
class Assign:
    key: str
    key_span: Span
    value: Value
    span: Span


@_node
class Block:
    kind: str
    kind_span: Span
    span: Span
    name: str | None = None
    name_span: Span | None = None
    members: tuple = ()  # Assign | Block


@_node
class Import:
    path: str
    span: Span


@_node
class Comment:
    text: str
    line: int
    col: int


@_node
class Module:
    """One parsed .orca file."""

    file: str  # as shown in diagnostics
    version: int | None = None
    version_span: Span | None = None
    imports: tuple = ()
    blocks: tuple = ()
    comments: tuple = ()


# ---- declarations ----------------------------------------------------------------------------


@_decl
class Decl:
    """A declaration; `spans` maps each written key to the span of its value."""

    span: Span
    spans: dict[str, Span] = field(default_factory=dict)
    origin: str = ""  # "file:line", e.g. "std/strategies.orca:12"

    def at(self, key: str) -> Span:
        return self.spans.get(key, self.span)


@_decl
class Named:
    name: str
    span: Span


@_decl
class Portion(Named):
    """A task in a training stage, and how much of its records the stage takes: `share` of
    them (`easy(30%)`) or `at_most` that many (`hard(500)`); neither: all of them."""

    share: float | None = None
    at_most: int | None = None


# A declaration's fields are its keys, named as the language names them (`from` is
# `source`): their types and defaults are in orcac/specs/settings.py, and to_spec fills in
# every key not written. A task's keys, and the defaults block's, stay None until resolve
# applies `defaults` and then the table's defaults.


@_decl
class TeacherDecl(Decl):
    name: str
    model: str
    api_key: str | None  # the environment variable's name
    api_base: str | tuple[str, ...] | None
    temperature: float
    top_p: float | None
    max_tokens: int
    seed: int | None
    concurrency: int
    adaptive: bool
    rpm: int | None
    tpm: int | None
    timeout: float  # seconds
    max_retries: int
    batch_size: int
    threads: int | None
    precision: str
    transport: str
    mode: str
    params: dict[str, str | int | float | bool] = field(default_factory=dict)


@_decl
class StudentDecl(Decl):
    name: str
    model: str
    chat_template: str


@_decl
class FormRule:
    """One adherence rule of a strategy: a built-in form, regex(...), max_words(N), min_words(N)."""

    kind: FormKind
    pattern: str | None = None
    value: int | None = None
    description: str


@_decl
class DemonstrationDecl(Decl):
    """A worked example the teacher sees as an earlier user/assistant exchange."""

    user: str
    assistant: str


@_decl
class StrategyDecl(Decl):
    name: str
    system: str
    expect: tuple[FormRule, ...]
    demonstrations: tuple[DemonstrationDecl, ...] = ()


@_decl
class EraseDecl(Decl):
    name: str
    system: str


@_decl
class JudgeDecl(Decl):
    """A teacher that scores answers: its rubric (a template over the task's prompt, the
    answer and the gold), the scale, the score an answer needs, and how the score is read."""

    name: str
    teacher: Named
    rubric: str
    min: float
    max: float
    threshold: float
    read: str


@_decl
class SourceExpr:
    kind: SourceKind
    path: str | None = None
    split: str | None = None  # hf(..., split = "...")
    config: str | None = None  # hf("org/name", config = "...")
    revision: str | None = None  # hf("org/name", revision = "...")
    query: str | None = None
    network: bool = False  # sql(..., network = true)
    span: Span


@_decl
class CheckExpr:
    kind: CheckKind
    uses_gold: bool = False
    pattern: str | None = None
    tolerance: float | None = None  # numeric(gold, tol = ...)
    judge: Named | None = None  # judged(NAME)
    span: Span


@_decl
class BestOf:
    candidates: tuple[Named, ...]
    by: str
    probe: int
    span: Span


@_decl
class DefaultsDecl(Decl):
    teacher: Named | None = None
    erase: Named | None = None
    strategy: Named | BestOf | None = None
    seed: int | None = None
    holdout: float | None = None
    accept: tuple[CheckExpr, ...] | None = None
    allow_truncated: bool | None = None
    limit: int | None = None
    samples: int | None = None
    keep: int | None = None
    temperature: float | None = None


@_decl
class TaskDecl(Decl):
    name: str
    category: str | None = None
    source: SourceExpr | None = None
    prompt: str | None = None
    gold: str | None = None
    answer: str | None = None  # the source's own answer: no teacher, no strategy
    instruction: str | None = None  # the row's own system message, erased
    teacher: Named | None = None
    erase: Named | None = None
    strategy: Named | BestOf | None = None
    accept: tuple[CheckExpr, ...] | None = None
    allow_truncated: bool | None = None
    limit: int | None = None
    seed: int | None = None
    holdout: float | None = None
    samples: int | None = None  # teacher calls per example
    keep: int | None = None  # accepted, distinct answers kept per example
    temperature: float | None = None  # None: the teacher's


@_decl
class LoraDecl(Decl):
    r: int
    alpha: int
    dropout: float
    targets: tuple[str, ...]


@_decl
class DistillDecl(Decl):
    teacher: Named
    beta: float
    on_policy: float


@_decl
class StageDecl(Decl):
    name: str
    tasks: tuple[Portion, ...]
    epochs: float


@_decl
class TrainDecl(Decl):
    student: Named
    max_length: int
    packing: bool
    lr: float
    schedule: str
    warmup: float
    batch_size: int
    grad_accum: int
    seed: int
    precision: str
    lora: LoraDecl | None = None
    output: str | None  # None: .orca/<spec name>/student
    keep_stages: bool
    objective: str = "sft"
    distill: DistillDecl | None = None
    stages: tuple[StageDecl, ...] = ()


@_decl
class EvalDecl(Decl):
    max_new_tokens: int
    batch_size: int
    prompted: bool
    judges: bool
    benchmarks: tuple[str, ...]
    benchmark_teachers: tuple[str, ...]


@_decl
class Spec:
    """Every declaration of a spec and the files it imports, in declaration order."""

    file: str  # the main file, as shown
    path: str  # the main file, absolute (never written to a plan)
    version: int
    modules: tuple[str, ...] = ()  # every file read, main first
    teachers: tuple[TeacherDecl, ...] = ()
    students: tuple[StudentDecl, ...] = ()
    strategies: tuple[StrategyDecl, ...] = ()
    erases: tuple[EraseDecl, ...] = ()
    judges: tuple[JudgeDecl, ...] = ()
    defaults: DefaultsDecl | None = None
    tasks: tuple[TaskDecl, ...] = ()
    train: TrainDecl | None = None
    eval: EvalDecl | None = None
