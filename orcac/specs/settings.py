"""The settings table: every key of the language, each fact about it written once.

One row (`Key`) per key of a block (`teacher { timeout = 30s }`) and per keyword argument of
a call (`best_of(a, b, probe = 16)`): the value it takes (`type`), what it is when it is not
written (`default`), the plan field that holds it (`plan_name`), and, wherever that name is
not the key's own, why (`why_renamed`). Read from here, not restated:

- `orcac.compiler.to_spec`: which keys each block and call takes, how each value is checked
  (its converter, from `type`), whether it is required, and the default of each key not
  written (a task's keys are left unset there: `resolve` fills them, after `defaults`);
- `orcac.compiler.resolve`: what a task's key falls back to when neither it nor `defaults`
  sets it, and which task keys a `defaults` block takes (`DEFAULTS`);
- `orcac.compiler.lower`: which declaration field goes to which plan field, and which teacher
  settings a probe's key covers (`determines_answer`);
- `orcac.specs.plan`: the default, choices and JSON Schema description of each plan field that
  holds a key (`plan.setting`);
- the language server: hover shows a key's value as it is written (`env("NAME")`, `30s`).

tests/compiler/test_settings.py keeps the table true against the declarations, the Plan
models and docs/language.md. Light: the standard library only (`orcac check` imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# ---- value types ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Type:
    """What a key's value must be. `kind` names the converter in orcac.compiler.to_spec;
    `lo`/`hi` bound numbers (inclusive), `above` bounds them from below (exclusive), and
    `options` are a choice's words."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    above: float | None = None
    options: tuple[str, ...] = ()


def whole(lo: int | None = None, hi: int | None = None) -> Type:
    return Type("integer", lo, hi)


def number(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Type:
    return Type("number", lo, hi, above)


def one_of(*options: str) -> Type:
    return Type("choice", options=options)


TEXT = Type("text")  # a non-empty string
STRING = Type("string")  # any string
PATH = Type("path")  # a file or directory name
URLS = Type("urls")  # a URL, or a list of replicas' URLs
ENV = Type("env")  # env("NAME"): the name of an environment variable
FRACTION = Type("fraction")  # 20% or 0.2
DURATION = Type("duration")  # 30s, 500ms, 2m, or a number of seconds
BOOLEAN = Type("boolean")
REF = Type("ref")  # a declaration's name
REFS = Type("refs")  # a list of declarations' names
PORTIONS = Type("portions")  # a list of task names, each maybe with its portion: [a, b(30%), c(500)]
NAMES = Type("names")  # a list of words
SOURCE = Type("source")  # jsonl(..), csv(..), parquet(..), hf(..), sql(..)
CHECKS = Type("checks")  # a check or a list of them
FORMS = Type("forms")  # an answer form or a list of them
STRATEGY = Type("strategy")  # a strategy's name or best_of(..)

PRECISIONS = ("auto", "bf16", "fp32")
SCORE_READERS = ("score_line", "json")  # a judge's `read`


# ---- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key. `block` is a block kind, or a call (`"best_of()"`) for its keyword arguments.

    `default`: the value when the key is not written (None: no value). `plan_name`: the field
    of the block's plan model that holds it ("" when it is `name`; dotted: a field of a nested
    record). `why_renamed`: why `plan_name` is not `name`, required where it is not. `doc`: the
    plan field's description in its JSON Schema, where that field takes its default from here
    ("": none). `field`: the declaration's
    attribute in orcac.specs.spec ("" when it is `name`). `determines_answer`: the value is part
    of what determines a teacher's answer, hashed into a job's id
    (orcac.runtime.teachers.jobs.job_id) and a probe decision's key
    (orcac.compiler.lower.probe_key) alike; `api_base` counts through `answer_api_base`."""

    block: str
    name: str
    type: Type
    default: Any = None
    plan_name: str = ""
    why_renamed: str = ""
    doc: str = ""
    required: bool = False
    field: str = ""
    determines_answer: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan_name", self.plan_name or self.name)
        object.__setattr__(self, "field", self.field or self.name)

    @property
    def renamed(self) -> bool:
        return self.plan_name != self.name


HISTORICAL = "historical; kept so committed plans do not change"

KEYS: tuple[Key, ...] = (
    # ---- teacher: a model that answers teacher jobs
    Key("teacher", "model", TEXT, required=True, determines_answer=True),
    Key(
        "teacher",
        "api_key",
        ENV,
        plan_name="api_key_env",
        why_renamed="the plan holds the name of an environment variable, never a key: the field says so to whoever reads the plan",
        doc="name of the env var holding the key",
    ),
    Key(
        "teacher",
        "api_base",
        URLS,
        doc="the server's URL; a list: replicas of one model, each request to the least-loaded",
        determines_answer=True,
    ),
    Key("teacher", "temperature", number(0.0, 2.0), 0.0, determines_answer=True),
    Key("teacher", "top_p", number(0.0, 1.0), determines_answer=True),
    Key("teacher", "max_tokens", whole(1), 512, determines_answer=True),
    Key("teacher", "seed", whole(0), determines_answer=True),
    Key("teacher", "concurrency", whole(1, 100000), 16),
    Key(
        "teacher", "adaptive", BOOLEAN, True, doc="adjust the requests in flight within [1, concurrency] on 429s (AIMD)"
    ),
    Key("teacher", "rpm", whole(1), doc="requests per minute the provider allows"),
    Key("teacher", "tpm", whole(1), doc="tokens per minute the provider allows"),
    Key(
        "teacher",
        "timeout",
        DURATION,
        60.0,
        plan_name="timeout_s",
        why_renamed="the language writes a duration with its unit (30s, 2m); the plan holds a bare number, so its name carries the unit: seconds",
    ),
    Key("teacher", "max_retries", whole(0, 100), 6),
    # only read by the in-process `local/...` provider
    Key("teacher", "batch_size", whole(1, 4096), 16),
    Key("teacher", "threads", whole(1, 1024)),
    Key(
        "teacher",
        "precision",
        one_of(*PRECISIONS),
        "auto",
        doc="auto: bf16 where the CPU or GPU computes it natively (orcac.runtime.models.precision)",
    ),
    Key(
        "teacher",
        "transport",
        one_of("auto", "litellm"),
        "auto",
        doc="auto: OpenAI-compatible endpoints are called directly over HTTP, after litellm has resolved the request once; "
        "litellm: every request through litellm.acompletion",
    ),
    Key(
        "teacher",
        "mode",
        one_of("online", "batch"),
        "online",
        doc="batch: jobs go through the provider's batch API (files and batches), not online calls",
    ),
    # ---- student: the model being fine-tuned
    Key("student", "model", TEXT, required=True),
    Key("student", "chat_template", one_of("auto", "chatml"), "auto"),
    # ---- strategy: the teacher's instruction, and the answer form it asks for
    Key("strategy", "system", TEXT, required=True),
    Key(
        "strategy",
        "expect",
        FORMS,
        (),
        plan_name="adherence",
        why_renamed="the plan names the rules after what build and eval measure with them, an answer's adherence to its strategy's form "
        "(the report's column); " + HISTORICAL,
    ),
    Key("demonstration", "user", TEXT, required=True),
    Key("demonstration", "assistant", TEXT, required=True),
    # ---- erase: the system message the student is trained with
    Key("erase", "system", TEXT, required=True),
    # ---- task
    Key(
        "task",
        "from",
        SOURCE,
        required=True,
        field="source",
        plan_name="source",
        why_renamed="`from` is a Python keyword, so neither the declaration nor the plan model can have a field of that name",
    ),
    Key("task", "prompt", TEXT, required=True),
    Key("task", "gold", TEXT),
    # Answers the source already has (Orca 1's ChatGPT and GPT-4 responses, OpenOrca, SlimOrca):
    # no teacher is asked; the row's own system message (`instruction`) is erased like a strategy.
    Key("task", "answer", TEXT, doc="template of the answer the source already has: no teacher is asked"),
    Key(
        "task",
        "instruction",
        TEXT,
        doc="template of the row's own system message: erased, audited per row, never stored",
    ),
    Key("task", "category", TEXT),
    Key("task", "teacher", REF),
    Key("task", "erase", REF),
    Key("task", "strategy", STRATEGY),  # best_of(..): the plan's `probe` holds it, `strategy` its decision
    Key("task", "accept", CHECKS, ()),
    Key("task", "allow_truncated", BOOLEAN, False),
    Key("task", "limit", whole(1)),
    Key("task", "seed", whole(0), 0),
    Key("task", "holdout", FRACTION, 0.0),
    # Rejection sampling (RFT, STaR): `samples` teacher calls per example at `temperature`,
    # up to `keep` accepted, distinct answers become records.
    *(
        Key(
            "task",
            name,
            type,
            default,
            plan_name=f"sampling.{name}",
            why_renamed="the plan keeps the three settings of rejection sampling together in one `sampling` record, "
            "beside the rule the compiler adds for what fixes each sample's answer (`seeds`)",
            doc=doc,
        )
        for name, type, default, doc in (
            ("samples", whole(1, 1000), 1, ""),
            ("keep", whole(1, 1000), 1, ""),
            ("temperature", number(0.0, 2.0), None, "None: the teacher's temperature"),
        )
    ),
    # ---- judge: a teacher that scores answers a task has no gold for (`accept = judged(NAME)`)
    Key("judge", "teacher", REF, required=True),
    Key("judge", "rubric", TEXT, required=True),  # a template over prompt, answer (and gold)
    Key("judge", "min", number(), 1.0, doc="the lowest score of the judge's scale"),
    Key("judge", "max", number(), 10.0, doc="the highest score of the judge's scale"),
    Key("judge", "threshold", number(), required=True),
    Key(
        "judge",
        "read",
        one_of(*SCORE_READERS),
        "score_line",
        doc="how the score is read from the judge's answer: score_line, its last 'Score: N' line; "
        "json, a JSON object's 'score' (and 'reasoning')",
    ),
    # ---- train
    Key("train", "student", REF, required=True),
    Key("train", "max_length", whole(16, 1_048_576), 2048),
    Key("train", "packing", BOOLEAN, True),
    Key("train", "lr", number(hi=1.0, above=0.0), 2e-5),
    Key("train", "schedule", one_of("cosine", "linear", "constant"), "cosine"),
    Key(
        "train",
        "warmup",
        FRACTION,
        0.0,
        plan_name="warmup_ratio",
        why_renamed="the plan names what the number is, a share of each stage's steps (the language writes it as a percentage); "
        "the name is transformers' TrainingArguments.warmup_ratio, though the runtime now hands the share over as warmup_steps "
        "(a float below 1 is a share); " + HISTORICAL,
    ),
    Key("train", "batch_size", whole(1, 65536), 1),
    Key("train", "grad_accum", whole(1, 65536), 1),
    Key("train", "seed", whole(0), 0),
    Key("train", "precision", one_of(*PRECISIONS), "auto"),
    Key("train", "output", PATH),  # None: .orca/<spec name>/student (lower, by spec_stem)
    Key(
        "train",
        "keep_stages",
        BOOLEAN,
        False,
        doc="keep every stage's weights once the run is done (off: only final/, the stages' summaries and loss curve)",
    ),
    Key(
        "train",
        "objective",
        one_of("sft", "distill", "sft+distill"),
        "sft",
        doc="sft: cross-entropy on the teacher's answers; distill: a divergence from a local teacher's next-token "
        "distributions under the strategy's prompt (the `distill` block); sft+distill: their sum",
    ),
    # ---- distill: the teacher and divergence of `objective = distill` (orcac.runtime.training.distill)
    Key("distill", "teacher", REF, required=True),
    Key(
        "distill",
        "beta",
        number(0.0, 1.0),
        # 0, not GKD's 0.5: off-policy context distillation starts from a student that gives the
        # teacher's tokens almost no mass, where the JSD's gradient vanishes (BENCHMARKS.md, "SFT
        # against distillation on the demo": at 0.5 the demo's student never learnt its form)
        0.0,
        doc="generalized JSD's beta (GKD): 0 forward KL(teacher || student), 1 reverse KL",
    ),
    Key(
        "distill",
        "on_policy",
        FRACTION,
        0.0,
        doc="the share of batches whose answers the student samples itself (GKD's lambda); the others are the teacher's kept answers",
    ),
    Key("lora", "r", whole(1, 4096), 16),
    Key("lora", "alpha", whole(1, 65536), 32),
    Key("lora", "dropout", number(0.0, 1.0), 0.05),
    Key(
        "lora",
        "targets",
        NAMES,
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        plan_name="target_modules",
        why_renamed="PEFT's own name (LoraConfig.target_modules), which the runtime hands over unchanged",
    ),
    Key("stage", "tasks", PORTIONS, required=True),  # each task maybe with its portion: a(30%), b(500)
    Key("stage", "epochs", number(above=0.0, hi=1000.0), 1.0),
    # ---- eval
    Key("eval", "max_new_tokens", whole(1, 1_000_000), 256),
    Key("eval", "batch_size", whole(1, 4096), 16),
    Key("eval", "prompted", BOOLEAN, True),
    Key("eval", "judges", BOOLEAN, True),
    Key(
        "eval",
        "benchmarks",
        NAMES,
        (),
        doc="lm-evaluation-harness tasks run on the base and trained students (a name, or a task's .yaml file beside the spec)",
    ),
    Key(
        "eval",
        "benchmark_teachers",
        NAMES,
        (),
        doc="local teachers (local/...) whose weights also run the benchmarks, beside the prompted arm: the reference the student is measured against",
    ),
    # ---- keyword arguments of calls
    Key(
        "best_of()",
        "by",
        one_of("accept", "judge"),
        "accept",
        plan_name="metric",
        why_renamed="the plan's probe record names what it scores candidates by, its metric; the plan's contract was written "
        "before the language; " + HISTORICAL,
    ),
    Key(
        "best_of()",
        "probe",
        whole(1),
        16,
        plan_name="size",
        why_renamed="the plan holds it inside the task's `probe` record, where `probe.probe` would say nothing: it is the probe's size in rows",
    ),
    Key(
        "numeric()",
        "tol",
        number(0.0),
        1e-6,
        field="tolerance",
        plan_name="tolerance",
        why_renamed="the language abbreviates what the plan (and the report) spell out; " + HISTORICAL,
    ),
    Key("hf()", "split", STRING),
    Key("hf()", "config", STRING, doc="hf, a Hub dataset: which of its configs (subsets)"),
    Key(
        "hf()",
        "revision",
        STRING,
        doc="hf, a Hub dataset: the branch, tag or commit the spec asked for (none: the default branch)",
    ),
    Key(
        "sql()",
        "network",
        BOOLEAN,
        False,
        doc="sql: the spec allows the query to reach the network (not pinned by sha256)",
    ),
    Key(  # in `expect` (a check's regex() takes none); not written: "matches /PATTERN/"
        "regex()",
        "why",
        STRING,
        field="description",
        plan_name="description",
        why_renamed="the plan holds every rule's description, whatever wrote it: a built-in form's, max_words' `at most N words`, "
        "or `why`",
    ),
)

# The task keys a `defaults` block may set, in the order they are listed (hover, completion).
DEFAULTS = (
    "teacher",
    "erase",
    "strategy",
    "seed",
    "holdout",
    "accept",
    "allow_truncated",
    "limit",
    "samples",
    "keep",
    "temperature",
)

CALLS = tuple(dict.fromkeys(k.block for k in KEYS if k.block.endswith("()")))

_BY_BLOCK: dict[str, tuple[Key, ...]] = {}
for _key in KEYS:
    _BY_BLOCK[_key.block] = (*_BY_BLOCK.get(_key.block, ()), _key)
_BY_BLOCK["defaults"] = tuple(next(k for k in _BY_BLOCK["task"] if k.name == name) for name in DEFAULTS)


def keys(block: str) -> tuple[Key, ...]:
    """The keys of a block kind or call, in the order they are listed; `defaults`: the task's
    keys it takes (their defaults are the task's, applied by resolve)."""
    return _BY_BLOCK.get(block, ())


def key(block: str, name: str) -> Key:
    for k in keys(block):
        if k.name == name:
            return k
    raise KeyError(f"{block} has no key {name!r}")


def options(block: str, name: str) -> tuple[str, ...]:
    """A choice's words: what the plan's Literal field allows."""
    return key(block, name).type.options


def answer_api_base(api_base: str | tuple[str, ...] | list[str] | None) -> str | None:
    """The api base as part of what determines an answer: one server may serve another model
    under the same name, so it counts; a list is replicas of one model, so which of them
    answers does not (adding or reordering servers reuses every stored answer).

    >>> answer_api_base("http://a/v1"), answer_api_base(("http://a/v1", "http://b/v1")), answer_api_base(None)
    ('http://a/v1', None, None)
    """
    return api_base if isinstance(api_base, str) else None


def answer_keys() -> tuple[Key, ...]:
    """The teacher keys that determine an answer (api_base apart: see answer_api_base)."""
    return tuple(k for k in keys("teacher") if k.determines_answer and k.name != "api_base")
