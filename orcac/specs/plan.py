"""The Plan: the contract between the compiler and the runtime.

The compiler lowers a spec to a `Plan`; `orcac build`, `train` and `eval` read nothing
else. A plan is committed and reviewed in diffs, so everything in it is deterministic:
no timestamps, run ids, absolute paths or secret values. Paths are POSIX and relative
to the directory that holds the plan file. API keys appear only as the *name* of an
environment variable.

Maps (`tasks`, `teachers`, ...) are keyed by the declared name and written sorted;
model fields keep their declared order, which is the order a reviewer reads them in.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT = 1
"""Bumped whenever a plan written by an older orcac would be read differently."""


class PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- models ---------------------------------------------------------------------


class TeacherPlan(PlanModel):
    """A model that answers teacher jobs: any litellm model string, or `local/<name>`."""

    name: str
    model: str
    api_key_env: str | None = Field(None, description="name of the env var holding the key")
    api_base: str | tuple[str, ...] | None = Field(
        None, description="the server's URL; a list: replicas of one model, each request to the least-loaded"
    )
    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = 512
    seed: int | None = None
    concurrency: int = 16
    adaptive: bool = Field(
        True, description="adjust the requests in flight within [1, concurrency] on 429s (AIMD)"
    )
    rpm: int | None = Field(None, description="requests per minute the provider allows")
    tpm: int | None = Field(None, description="tokens per minute the provider allows")
    timeout_s: float = 60.0
    max_retries: int = 6
    # Only read by the in-process `local/...` provider.
    batch_size: int = 16
    threads: int | None = None
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 where the CPU or GPU computes it natively (orcac.runtime.models.precision)"
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra provider parameters passed through to litellm"
    )
    transport: Literal["auto", "litellm"] = Field(
        "auto",
        description="auto: OpenAI-compatible endpoints are called directly over HTTP, after litellm "
        "has resolved the request once; litellm: every request through litellm.acompletion",
    )
    mode: Literal["online", "batch"] = Field(
        "online", description="batch: jobs go through the provider's batch API (files and batches), not online calls"
    )


class StudentPlan(PlanModel):
    """The model being fine-tuned: a hub id, a local directory, a .gguf file or `local/<name>`."""

    name: str
    model: str
    chat_template: Literal["auto", "chatml"] = "auto"


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
    adherence: tuple[AdherenceRule, ...] = ()
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

    kind: Literal["jsonl", "csv", "parquet", "hf", "sql"]
    path: str | None = None  # jsonl/csv/parquet file, or hf dataset directory
    split: str | None = None  # hf: which split of a DatasetDict
    query: str | None = None  # sql: run by DuckDB with the plan's directory as cwd
    files: tuple[str, ...] = ()  # sql: the files the query reads (hashed)
    network: bool = Field(False, description="sql: the spec allows the query to reach the network (not pinned by sha256)")
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
    """

    kind: Literal["contains", "exact", "numeric", "regex", "nonempty", "follows"]
    pattern: str | None = None
    tolerance: float | None = None


class SplitCounts(PlanModel):
    """How many examples each split gets, computed from the source's row count."""

    rows: int  # rows in the source
    sampled: int  # min(rows, limit)
    holdout: int  # kept back for eval, never trained on, never sent to the teacher
    probe: int  # drawn from the non-held-out rows to choose a strategy
    train: int  # sent to the teacher (probe rows included)


class CandidateScore(PlanModel):
    strategy: str
    score: float  # share of probe answers that pass the task's checks
    passed: int
    total: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


class Decision(PlanModel):
    """A probe's result, recorded so that later builds reuse it and reviewers see why."""

    chosen: str
    key: str  # ProbePlan.key this decision was made for
    scores: tuple[CandidateScore, ...]


class ProbePlan(PlanModel):
    """Choose the task's strategy by measured performance on a probe sample."""

    candidates: tuple[str, ...]
    metric: Literal["accept"] = "accept"  # pass rate of the task's own checks against the gold
    size: int
    key: str = Field(description="sha256 over task, data, candidates and teacher: what a decision depends on")
    decision: Decision | None = None


SEED_RULE = "sample i of row r is sent with seed = sha256(task, r, i, task seed) mod 2^31, where the provider takes one"


class SamplingPlan(PlanModel):
    """Rejection sampling: `samples` teacher calls per example, up to `keep` accepted,
    distinct answers (lowest sample index first) become records."""

    samples: int = 1
    keep: int = 1
    temperature: float | None = Field(None, description="None: the teacher's temperature")
    seeds: str | None = Field(None, description="what fixes each sample's answer, when samples > 1")


class TaskPlan(PlanModel):
    name: str
    category: str | None = None
    source: SourcePlan
    prompt: str  # Jinja2 template over the source's columns
    gold: str | None = None  # Jinja2 template, or None when the task has no gold answer
    teacher: str
    erase: str
    strategy: str | None = Field(description="fixed strategy, or the probe's decision; None before it")
    system: str | None = Field(description="the resolved system text the teacher sees")
    probe: ProbePlan | None = None
    accept: tuple[CheckRule, ...] = ()
    allow_truncated: bool = False  # accept answers whose finish_reason is "length"
    sampling: SamplingPlan = SamplingPlan()
    limit: int | None = None
    seed: int = 0
    holdout: float = 0.0
    counts: SplitCounts


# ---- training and evaluation ----------------------------------------------------------


class LoraPlan(PlanModel):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


class StagePlan(PlanModel):
    name: str
    tasks: tuple[str, ...]
    epochs: float
    train_examples: int  # upper bound: sum of the tasks' train counts


class TrainPlan(PlanModel):
    student: str
    max_length: int = 2048
    packing: bool = True
    loss: Literal["teacher_tokens"] = "teacher_tokens"
    lr: float = 2e-5
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.0
    batch_size: int = 1
    grad_accum: int = 1
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the device supports it
    lora: LoraPlan | None = None
    output: str  # checkpoint directory, relative to the plan
    stages: tuple[StagePlan, ...]


class EvalPlan(PlanModel):
    max_new_tokens: int = 256
    batch_size: int = 16
    # Also score the teacher with its full strategy prompt and demonstrations: the ceiling of
    # what erasure can teach, against which the trained student's gain is measured.
    prompted: bool = True


# ---- the plan -----------------------------------------------------------------------------


class TaskEstimate(PlanModel):
    calls: int  # teacher calls: train rows, plus probe rows once per extra candidate
    probe_calls: int
    prompt_tokens: int  # approximate: characters / 4 over the rendered messages
    cost: float | None  # USD, where litellm knows the teacher's price; None otherwise


class Estimate(PlanModel):
    calls: int
    probe_calls: int
    prompt_tokens: int
    cost: float | None
    tasks: dict[str, TaskEstimate]


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
