"""The Plan: the contract between the compiler and the runtime.

The compiler lowers a spec to a `Plan`; `orcac build`, `train` and `eval` read nothing
else. A plan is committed and reviewed in diffs, so everything in it is deterministic:
no timestamps, run ids, absolute paths or secret values. Paths are POSIX and relative
to the directory that holds the plan file. API keys appear only as the *name* of an
environment variable.

Maps (`tasks`, `teachers`, ...) are keyed by the declared name and written sorted;
model fields keep their declared order, which is the order a reviewer reads them in.

A field that holds a key of the language takes its default, choices and description from
the settings table (orcac/specs/settings.py, through `setting` and `options`), which also
records why a field is named other than its key (`api_key` -> `api_key_env`, ...).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from orcac.specs import settings
from orcac.specs.settings import options

PLAN_FORMAT = 1
"""Bumped whenever a plan written by an older orcac would be read differently."""


class PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields written to the plan only when they differ from their default: a field added after
    # plans were committed leaves every plan that does not use it byte for byte as it was (and
    # so its hash, which runs, training and eval join on).
    WRITTEN_WHEN_SET: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler):
        data = handler(self)
        for name in self.WRITTEN_WHEN_SET:
            if name in data and getattr(self, name) == type(self).model_fields[name].default:
                del data[name]
        return data


def setting(block: str, name: str):
    """A field that holds a key of the language: its default and description are the
    settings table's (orcac/specs/settings.py), which also says why a field is named other
    than its key."""
    key = settings.key(block, name)
    return Field(key.default, description=key.doc or None)


# ---- models ---------------------------------------------------------------------


class TeacherPlan(PlanModel):
    """A model that answers teacher jobs: any litellm model string, or `local/<name>`."""

    name: str
    model: str
    api_key_env: str | None = setting("teacher", "api_key")
    api_base: str | tuple[str, ...] | None = setting("teacher", "api_base")
    temperature: float = setting("teacher", "temperature")
    top_p: float | None = setting("teacher", "top_p")
    max_tokens: int = setting("teacher", "max_tokens")
    seed: int | None = setting("teacher", "seed")
    concurrency: int = setting("teacher", "concurrency")
    adaptive: bool = setting("teacher", "adaptive")
    rpm: int | None = setting("teacher", "rpm")
    tpm: int | None = setting("teacher", "tpm")
    timeout_s: float = setting("teacher", "timeout")
    max_retries: int = setting("teacher", "max_retries")
    # Only read by the in-process `local/...` provider.
    batch_size: int = setting("teacher", "batch_size")
    threads: int | None = setting("teacher", "threads")
    precision: Literal[options("teacher", "precision")] = setting("teacher", "precision")  # type: ignore[valid-type]  # values from settings.py
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra provider parameters passed through to litellm"
    )
    transport: Literal[options("teacher", "transport")] = setting("teacher", "transport")  # type: ignore[valid-type]  # values from settings.py
    mode: Literal[options("teacher", "mode")] = setting("teacher", "mode")  # type: ignore[valid-type]  # values from settings.py


class StudentPlan(PlanModel):
    """The model being fine-tuned: a hub id, a local directory, a .gguf file or `local/<name>`."""

    name: str
    model: str
    chat_template: Literal[options("student", "chat_template")] = setting("student", "chat_template")  # type: ignore[valid-type]  # values from settings.py


# ---- instructions -----------------------------------------------------------------


class AdherenceRule(PlanModel):
    """One test that an answer has the form its strategy asks for (used by `orcac eval`)."""

    kind: Literal["regex", "max_words", "min_words"]
    pattern: str | None = None  # regex: searched with re.MULTILINE | re.DOTALL
    value: int | None = None  # max_words / min_words
    description: str


class DemonstrationPlan(PlanModel):
    """A worked example: the teacher sees it as an earlier user turn and its answer."""

    user: str
    assistant: str


class StrategyPlan(PlanModel):
    """A named system instruction that tells the teacher how to approach a task.

    The teacher is shown the system text, then each demonstration as an earlier exchange,
    then the task's prompt. The student is shown none of it (prompt erasure)."""

    name: str
    system: str
    adherence: tuple[AdherenceRule, ...] = setting("strategy", "expect")
    demonstrations: tuple[DemonstrationPlan, ...] = ()
    origin: str = Field(description="where it was declared, e.g. 'std/strategies.orca:12'")


class ErasePlan(PlanModel):
    """The generic system message that replaces the strategy's at training time."""

    name: str
    system: str
    origin: str


# ---- tasks --------------------------------------------------------------------------


class SourcePlan(PlanModel):
    """Where a task's rows come from. `sha256` covers every file the source reads."""

    WRITTEN_WHEN_SET = ("repo", "config", "revision", "commit")

    kind: Literal["jsonl", "csv", "parquet", "hf", "sql"]
    path: str | None = None  # jsonl/csv/parquet file, or hf dataset directory
    repo: str | None = Field(None, description="hf: the Hub dataset, org/name (path is then empty)")
    config: str | None = setting("hf()", "config")
    split: str | None = setting("hf()", "split")  # hf: which split of a DatasetDict
    revision: str | None = setting("hf()", "revision")
    commit: str | None = Field(
        None,
        description="hf, a Hub dataset: the 40-hex commit `orcac plan` resolved the revision to, which build reads",
    )
    query: str | None = None  # sql: run by DuckDB with the plan's directory as cwd
    files: tuple[str, ...] = ()  # sql: the files the query reads; hf on the Hub: the repo's files read (hashed)
    network: bool = setting("sql()", "network")
    sha256: str
    columns: tuple[str, ...]
    rows: int


class CheckRule(PlanModel):
    """One acceptance test on a teacher answer; a task accepts an answer if all hold.

    `contains`: the gold appears in the answer (case-insensitive, whitespace-normalised).
    `exact`: the extracted final answer equals the gold (same normalisation).
    `numeric`: the extracted final answer is a number within `tolerance` of the gold.
    `regex`: `pattern` is found in the answer.
    `nonempty`: the answer has non-whitespace text.
    `follows`: the answer has the form its strategy expects (every adherence rule holds).
    `no_echo`: the answer does not refer to a prompt the student never sees ("as instructed",
    "following the example above"; orcac/specs/forms.py).
    """

    kind: Literal["contains", "exact", "numeric", "regex", "nonempty", "follows", "no_echo"]
    pattern: str | None = None
    tolerance: float | None = None


class JudgePlan(PlanModel):
    """A teacher that scores an answer no gold can check. It is sent one user message, `rubric`
    rendered with the task's `prompt`, the `answer` (and the task's `gold`), and its score is
    read from what it answers (`read`): an answer is kept when the score is at least
    `threshold`, on the scale `min`..`max`."""

    name: str
    teacher: str
    rubric: str
    min: float = setting("judge", "min")
    max: float = setting("judge", "max")
    threshold: float
    read: Literal[options("judge", "read")] = setting("judge", "read")  # type: ignore[valid-type]  # values from settings.py
    origin: str = Field(description="where it was declared, e.g. 'spec.orca:12'")


class JudgedRule(PlanModel):
    """`judged(NAME)`: the judge's score of the answer is at least its threshold. Asked only
    for answers that pass the task's other checks, after they have all arrived."""

    kind: Literal["judged"]
    judge: JudgePlan


# A task's checks: a rule of its own, or a judge's verdict (a second job per answer).
AcceptRule = Annotated[CheckRule | JudgedRule, Field(discriminator="kind")]


class SplitCounts(PlanModel):
    """How many examples each split gets, computed from the source's row count."""

    rows: int  # rows in the source
    sampled: int  # min(rows, limit)
    holdout: int  # kept back for eval, never trained on, never sent to the teacher
    probe: int  # drawn from the non-held-out rows to choose a strategy
    train: int  # sent to the teacher (probe rows included)


class CandidateScore(PlanModel):
    strategy: str
    score: float  # share of probe answers that pass the task's checks; by = judge: their mean judge score
    passed: int
    total: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


class Decision(PlanModel):
    """A probe's result, recorded so that later builds reuse it and reviewers see why."""

    WRITTEN_WHEN_SET = ("tie_break",)

    chosen: str
    key: str  # ProbePlan.key this decision was made for
    scores: tuple[CandidateScore, ...]
    # when another candidate had the winner's score: the rule that chose ("fewer tokens", "name order")
    tie_break: str | None = None


class ProbePlan(PlanModel):
    """Choose the task's strategy by measured performance on a probe sample."""

    candidates: tuple[str, ...]
    # accept: pass rate of the task's own checks; judge: mean score of the task's judge
    metric: Literal[options("best_of()", "by")] = setting("best_of()", "by")  # type: ignore[valid-type]  # values from settings.py
    size: int
    key: str = Field(description="sha256 over task, data, candidates and teacher: what a decision depends on")
    decision: Decision | None = None


SEED_RULE = "sample i of row r is sent with seed = sha256(task, r, i, task seed) mod 2^31, where the provider takes one"


class SamplingPlan(PlanModel):
    """Rejection sampling: `samples` teacher calls per example, up to `keep` accepted,
    distinct answers (lowest sample index first) become records."""

    samples: int = setting("task", "samples")
    keep: int = setting("task", "keep")
    temperature: float | None = setting("task", "temperature")
    seeds: str | None = Field(None, description="what fixes each sample's answer, when samples > 1")


class TaskPlan(PlanModel):
    name: str
    category: str | None = setting("task", "category")
    source: SourcePlan
    prompt: str  # Jinja2 template over the source's columns
    gold: str | None = setting("task", "gold")  # Jinja2 template, or None when the task has no gold answer
    # A task whose answers the source has: `answer` renders each row's, and no teacher is asked.
    answer: str | None = setting("task", "answer")
    instruction: str | None = setting("task", "instruction")
    teacher: str | None = Field(description="the teacher that answers; None: the answers come from the source")
    erase: str
    strategy: str | None = Field(
        description="fixed strategy, or the probe's decision; None before it, and for answers from the source"
    )
    system: str | None = Field(description="the resolved system text the teacher sees")
    probe: ProbePlan | None = None
    accept: tuple[AcceptRule, ...] = setting("task", "accept")
    allow_truncated: bool = setting("task", "allow_truncated")  # accept answers whose finish_reason is "length"
    sampling: SamplingPlan = SamplingPlan()
    limit: int | None = setting("task", "limit")
    seed: int = setting("task", "seed")
    holdout: float = setting("task", "holdout")
    counts: SplitCounts

    WRITTEN_WHEN_SET = ("answer", "instruction")

    @property
    def given(self) -> bool:
        """Its answers come from its source (`answer`): no teacher, no strategy, no job."""
        return self.answer is not None


# ---- training and evaluation ----------------------------------------------------------


class LoraPlan(PlanModel):
    r: int = setting("lora", "r")
    alpha: int = setting("lora", "alpha")
    dropout: float = setting("lora", "dropout")
    target_modules: tuple[str, ...] = setting("lora", "targets")


class DistillPlan(PlanModel):
    """`objective = distill`: the local teacher whose next-token distributions the student
    learns, and the divergence (orcac.runtime.training.distill)."""

    teacher: str  # a TeacherPlan whose model is local (local/...)
    beta: float = setting("distill", "beta")
    on_policy: float = setting("distill", "on_policy")


class PortionPlan(PlanModel):
    """How much of a task's records a stage takes: a share, or at most a number; drawn by
    the train seed (orcac.sampling.portion), so the same records every run."""

    share: float | None = None
    at_most: int | None = None


class StagePlan(PlanModel):
    name: str
    tasks: tuple[str, ...]
    epochs: float
    train_examples: int  # at most: the sum of `examples`
    # Per task, at most this many records: its training rows x keep, then its portion.
    examples: dict[str, int] = Field(default_factory=dict)
    # The tasks the stage takes only part of (the others: all their records).
    portions: dict[str, PortionPlan] = Field(default_factory=dict)


class TrainPlan(PlanModel):
    student: str
    max_length: int = setting("train", "max_length")
    packing: bool = setting("train", "packing")
    loss: Literal["teacher_tokens"] = "teacher_tokens"
    lr: float = setting("train", "lr")
    schedule: Literal[options("train", "schedule")] = setting("train", "schedule")  # type: ignore[valid-type]  # values from settings.py
    warmup_ratio: float = setting("train", "warmup")
    batch_size: int = setting("train", "batch_size")
    grad_accum: int = setting("train", "grad_accum")
    seed: int = setting("train", "seed")
    # auto: bf16 where the device supports it
    precision: Literal[options("train", "precision")] = setting("train", "precision")  # type: ignore[valid-type]  # values from settings.py
    lora: LoraPlan | None = None
    output: str  # checkpoint directory, relative to the plan
    stages: tuple[StagePlan, ...]
    # A stage's weights are what a stopped run resumes from; once final/ is written they are
    # dropped unless kept (fp32: 538 MB a stage for the 135M demo student).
    keep_stages: bool = setting("train", "keep_stages")
    objective: Literal[options("train", "objective")] = setting("train", "objective")  # type: ignore[valid-type]  # values from settings.py
    distill: DistillPlan | None = None

    WRITTEN_WHEN_SET = ("keep_stages", "objective", "distill")


class EvalPlan(PlanModel):
    max_new_tokens: int = setting("eval", "max_new_tokens")
    batch_size: int = setting("eval", "batch_size")
    # Also score the teacher with its full strategy prompt and demonstrations: the ceiling of
    # what erasure can teach, against which the trained student's gain is measured.
    prompted: bool = setting("eval", "prompted")
    # A judged task's judges also score every arm's answers, so its accuracy counts their
    # verdicts (off: a judge that costs money is not asked, and such a task's accuracy leaves
    # them out, as build never could).
    judges: bool = setting("eval", "judges")
    # Standard benchmarks (lm-evaluation-harness tasks), run beside the held-out arms with the
    # chat template and the erase message, as the student was trained (evaluate/benchmarks.py).
    benchmarks: tuple[str, ...] = setting("eval", "benchmarks")
    # Local teachers whose own weights run the same benchmarks, with the same system instruction,
    # when the prompted arm runs: what the student is compared with outside the spec's tasks.
    benchmark_teachers: tuple[str, ...] = setting("eval", "benchmark_teachers")

    WRITTEN_WHEN_SET = ("benchmarks", "benchmark_teachers")


# ---- the plan -----------------------------------------------------------------------------


FROM_SOURCE = "train rows whose answer comes from the source: checked and erased, no teacher call"


JUDGE_CALLS = (
    "judge calls at most: one per teacher answer and judge (only answers that pass the task's "
    "other checks are judged); their cost is in `cost`"
)


class TaskEstimate(PlanModel):
    calls: int  # teacher calls: train rows, plus probe rows once per extra candidate
    probe_calls: int
    from_source: int = Field(0, description=FROM_SOURCE)
    judge_calls: int = Field(0, description=JUDGE_CALLS)
    prompt_tokens: int  # approximate: characters / 4 over the rendered messages
    cost: float | None  # USD, where litellm knows the teacher's (and judges') price; None otherwise

    WRITTEN_WHEN_SET = ("from_source", "judge_calls")


class Estimate(PlanModel):
    calls: int
    probe_calls: int
    from_source: int = Field(0, description=FROM_SOURCE)
    judge_calls: int = Field(0, description=JUDGE_CALLS)
    prompt_tokens: int
    cost: float | None
    tasks: dict[str, TaskEstimate]

    WRITTEN_WHEN_SET = ("from_source", "judge_calls")


def spec_stem(spec: str) -> str:
    """The one name a spec's database (`.orca/<stem>.duckdb`) and default training output
    (`.orca/<stem>/student`) are made from: its file name without `.orca` (or `.plan.yaml`).

    >>> spec_stem("specs/exp.v1.orca"), spec_stem("exp.v2.plan.yaml")
    ('exp.v1', 'exp.v2')
    """
    name = spec.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".plan.yaml", ".orca"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


class Plan(PlanModel):
    format: int = PLAN_FORMAT
    language: int
    spec: str  # the spec's file name, relative to the plan
    teachers: dict[str, TeacherPlan]
    students: dict[str, StudentPlan]
    strategies: dict[str, StrategyPlan]
    erase: dict[str, ErasePlan]
    tasks: dict[str, TaskPlan]
    train: TrainPlan | None = None
    eval: EvalPlan = EvalPlan()
    estimate: Estimate


def recorded_decisions(plan: Plan) -> dict[str, Decision]:
    """task -> the probe decision the plan records (tasks without one left out): what a
    recompile carries forward where the probe's key still holds."""
    return {
        name: task.probe.decision
        for name, task in plan.tasks.items()
        if task.probe is not None and task.probe.decision is not None
    }
