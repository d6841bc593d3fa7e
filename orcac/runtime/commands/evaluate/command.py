"""`orcac eval`: did prompt erasure work? How much of the prompt's effect did the student absorb?

Three arms answer every held-out example of every task, greedy:

  base      the student before training, with ONLY the erase message as its system prompt;
  prompted  the teacher with everything erasure removes: the strategy's instruction and its
            demonstrations (when teacher and student are the same model, the base model
            prompted), through the teacher runtime, its answers cached by job id;
  trained   the trained student, with only the erase message (what it saw in training).

Each answer is scored twice with the shared checks (orcac/runtime/answers/checks.py):

  accuracy   the task's accept rules against the gold (`check_answer`, the same function
             that filtered the teacher's answers in `orcac build`), and a judged task's
             judges (`orcac.runtime.commands.evaluate.judging`: the build's judges, asked again about
             these answers, each judgement asked once and kept);
  adherence  the form the task's strategy asks for (`adheres`, the strategy's rules),
             e.g. numbered steps and a final "Answer:" line.

and which strategy's form each answer follows (`follows`: the one strategy of the plan whose
`expect` rules all hold, "none" or "several"): per task and arm, this shows whether the student
picked each task's own strategy, or one strategy for every task.

Per task and overall, for both metrics, the share of the gap closed:
`(trained - base) / (prompted - base)`: 1 means the student does without the prompt what the
prompt made the model do; n/a where the prompt changed nothing.

How sure each figure is (orcac/stats.py): every rate has its n and 95% Wilson interval; base
and trained answered the same rows, so whether they differ beyond chance is the exact McNemar
test on the rows where their outcomes differ (paired by task and row); the gap closed gets a
seeded bootstrap 95% interval over rows (the rows all three arms scored). Where n is too small
to tell base and trained apart, a line below the table says so.

Results go to DuckDB (`eval_runs`: one row per arm and task, with each rate's interval;
`eval_answers`: every answer, with the strategy it follows; `eval_gaps`: the gaps and their
intervals; `eval_paired`: the paired tests), to tables in the terminal and to a PNG bar chart
with error bars.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.answers.checks import Verdict, adheres, check_answer
from orcac.runtime.answers.erasure import teacher_messages
from orcac.runtime.context import RunContext
from orcac.runtime.commands.evaluate import benchmarks
from orcac.runtime.commands.evaluate import calls
from orcac.runtime.commands.evaluate import judging
from orcac.runtime.models import chat_format, precision
from orcac.stats import bootstrap_gap, gap_closed, mcnemar, undecided, wilson
from orcac.specs.forms import followed

MODELS = ("base", "prompted", "trained")  # in the order they run and are shown
METRICS = ("accuracy", "adherence")

@dataclass(frozen=True)
class Held:
    """One held-out example: the rendered prompt and its gold."""

    task: str
    row_index: int
    prompt: str
    gold: str | None


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str  # "stop" or "length"
    new_tokens: int
    job_id: str | None = None  # prompted answers: the teacher job that gave it (reused by re-runs)


@dataclass(frozen=True)
class Scored:
    held: Held
    answer: Answer
    accepted: bool | None  # None: the task checks only the form (its accuracy is n/a)
    reason: str
    adheres: bool | None  # None: the task's strategy has no adherence rules
    broken: tuple[str, ...]
    follows: str | None = None  # whose form it has: a strategy's name, "none", "several"; None: no strategy has a form


# ---- the recipe -------------------------------------------------------------------------


def command(context: RunContext, args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if getattr(args, "dry_run", False):
        return dry_run(context, models=models, limit=args.limit)
    return run(context, models=models, limit=args.limit)


def dry_run(context: RunContext, *, models=None, limit: int | None = None) -> int:
    """`orcac eval --dry-run`: the calls `run` would make and their cost (evaluate/estimate.py)."""
    from orcac.runtime.commands.evaluate import estimate

    plan, db_path = context.plan, context.db
    models = arms(plan, models)
    held = held_out(plan, context.root, db_path, limit=limit)
    prompted = arm_tasks("prompted", plan, held) if "prompted" in models else {}
    _require_strategies(plan, prompted)
    jobs, index = prompted_jobs(plan, prompted)
    known = placed(prompted, index, calls.stored(db_path, jobs), missing=None)
    code = estimate.dry_run(plan, db_path, models, held, prompted=(jobs, index), prompted_held=prompted,
                            prompted_answers=known, passes=_passes(plan))
    benchmarks.dry_run(plan, models)
    return code


def _passes(plan):
    """Whether an answer goes on to the judges: it passes the task's other checks."""
    def passes(held: Held, answer: Answer) -> bool:
        verdict = correctness(plan, held, answer)
        return verdict is None or verdict.accepted

    return passes


def arms(plan, models: list[str] | None) -> list[str]:
    """The arms to run, in their order: `models` (--models), else base, prompted unless the
    plan turns it off, and trained."""
    if models is None:
        models = [m for m in MODELS if m != "prompted" or plan.eval.prompted]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise OrcacError(f"--models: unknown model {unknown[0]!r}", hint=f"use a comma-separated list of {', '.join(MODELS)}")
    return [m for m in MODELS if m in models]


def run(context: RunContext, *, models=None, limit: int | None = None) -> int:
    """Score the arms in `models` (default: base, prompted unless the plan turns it off, trained)."""
    plan, root, db_path = context.plan, context.root, context.db
    models = arms(plan, models)
    held = held_out(plan, root, db_path, limit=limit)
    for name in models:  # every phase's needs, before the first spends minutes
        check_ready(name, plan, root, held)
    benchmarks.check_ready(plan, root, models)
    if plan.eval.judges:
        from orcac.runtime.teachers.calls import require_keys

        require_keys(judging.judge_keys(plan, held))
    total = sum(len(v) for v in held.values())
    print(
        f"evaluating {', '.join(models)} on {total} held-out examples "
        f"({', '.join(f'{t} {len(v)}' for t, v in held.items())})",
        file=sys.stderr,
        flush=True,
    )

    run_id = uuid.uuid4().hex[:12]
    plan_sha = context.plan_sha256
    summary, strategy_rows = [], []
    outcomes: dict[str, dict[str, list[Scored]]] = {}  # arm -> task -> scored answers, for the paired figures
    for name in models:
        asked = arm_tasks(name, plan, held)
        if not asked:
            print(f"  {name}: skipped: every task's answers come from its source, so no teacher is prompted", file=sys.stderr)
            continue
        started = time.monotonic()
        answers, where = answer_all(name, plan, root, asked, db_path=db_path)
        seconds = time.monotonic() - started
        print(f"  {name}: {sum(len(v) for v in asked.values())} answers in {seconds:.0f}s", file=sys.stderr, flush=True)
        judged = {}
        if plan.eval.judges:
            judged = judging.judge_answers(plan, root, db_path, name, asked, answers, passes=_passes(plan))
        scored = {
            task: [score(plan, h, a, judged.get((task, i))) for i, (h, a) in enumerate(zip(asked[task], answers[task], strict=True))]
            for task in asked
        }
        rows = summarise(name, scored, plan, judging.mean_scores(judged))
        _store(db_path, run_id, plan_sha, name, where, rows, scored, seconds, asked, judged)
        summary.extend(rows)
        outcomes[name] = scored
        strategy_rows.extend(strategies_followed(name, scored, plan))

    gaps = gaps_closed(summary, outcomes)
    paired = paired_tests(outcomes)
    _store_gaps(db_path, run_id, plan_sha, gaps)
    _store_paired(db_path, run_id, plan_sha, paired)
    show(summary, models, gaps, paired)
    show_strategies(strategy_rows)
    chart = _chart_path(plan, root, db_path)
    from orcac.runtime import charts as plots

    plots.eval_bars(summary, chart, title=f"orcac eval: {plan.spec} (held-out rows)", gaps=gaps)
    print(f"chart: {chart}", file=sys.stderr)
    benchmarks.run(plan, root, db_path, models, run_id=run_id, plan_sha=plan_sha, load=load_model, limit=limit)
    _refresh_card(context)
    return 0


def _refresh_card(context: RunContext) -> None:
    """The trained student's model card, rewritten with these results (orcac/runtime/results/model_card.py)."""
    from orcac.runtime.results import model_card
    from orcac.runtime.training.layout import FINAL_DIR

    if context.plan.train is not None and model_card.write(context, context.root / context.plan.train.output / FINAL_DIR):
        print(f"model card: {context.root / context.plan.train.output / FINAL_DIR / model_card.CARD}", file=sys.stderr)


# ---- held-out examples ------------------------------------------------------------------


def held_out(plan, root: Path, db_path: Path, *, limit: int | None = None) -> dict[str, list[Held]]:
    """Held-out examples per task: from the build's `examples` table, else from the sources."""
    stored = _stored_held(db_path, list(plan.tasks), plan.spec)
    held: dict[str, list[Held]] = {}
    for name, task in plan.tasks.items():
        if stored:  # the build rendered them: use exactly those
            rows = stored.get(name, [])
        elif task.counts.holdout:
            from orcac.runtime.answers.examples import materialize

            rows = [Held(name, e.row_index, e.prompt, e.gold) for e in materialize(plan, root, name) if e.split == "holdout"]
        else:
            rows = []
        if limit is not None:
            rows = rows[:limit]
        if rows:
            held[name] = rows
    if not held:
        raise OrcacError(
            "no held-out examples to evaluate on",
            hint="give tasks a holdout share (e.g. `holdout = 20%`) and run `orcac build`",
        )
    return held


def _stored_held(db_path: Path, tasks: list[str], spec: str) -> dict[str, list[Held]]:
    if not db_path.is_file():
        return {}
    from orcac.runtime.store.database import open_database

    con = open_database(db_path, spec=spec, read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "examples" not in names:
            return {}
        rows = con.execute(
            "SELECT task, row_index, prompt, gold FROM examples WHERE split = 'holdout' "
            "AND task IN (SELECT unnest(?)) ORDER BY task, row_index",
            [tasks],
        ).fetchall()
    finally:
        con.close()
    held: dict[str, list[Held]] = {}
    for task, row_index, prompt, gold in rows:
        held.setdefault(task, []).append(Held(task, row_index, prompt, gold))
    return held


# ---- answering ---------------------------------------------------------------------------


def arm_tasks(name: str, plan, held: dict[str, list[Held]]) -> dict[str, list[Held]]:
    """The held-out rows one arm answers: prompted asks a teacher, so it leaves out the tasks
    whose answers come from their source (they have neither teacher nor strategy)."""
    if name != "prompted":
        return held
    return {task: rows for task, rows in held.items() if not plan.tasks[task].given}


def check_ready(name: str, plan, root: Path, held: dict[str, list[Held]]) -> None:
    """Raise the one-line error that phase `name` would stop on, without loading anything."""
    if name == "prompted":
        from orcac.runtime.teachers.calls import require_keys

        held = arm_tasks(name, plan, held)
        _require_strategies(plan, held)
        require_keys(plan.teachers[plan.tasks[task].teacher] for task in held)
        return
    if plan.train is None:
        raise OrcacError("the plan has no train section, so there is no student to evaluate")
    if name == "trained":
        from orcac.runtime.training.layout import FINAL_DIR

        final = root / plan.train.output / FINAL_DIR
        if not (final / "config.json").is_file():
            raise OrcacError(f"no trained student in {final}", hint="run `orcac train` first (or pass --models base)")


def _require_strategies(plan, held: dict) -> None:
    """The prompted arm shows each task's strategy: a `best_of` task has one once its probe ran."""
    for task in held:
        if plan.tasks[task].system is None:
            raise OrcacError(f"task {task} has no strategy yet", hint="run `orcac build` to run its probe first")


def trained_on(final: Path, plan) -> bool:
    """Whether the student in `final` was trained on this plan as far as training goes: the plan
    it saved is this one but for the eval block, which training never reads."""
    from orcac.specs.plan import EvalPlan
    from orcac.specs.plan_file import dump_plan, read_plan

    saved = final / "plan.yaml"
    if not saved.is_file():
        return False
    try:
        before = read_plan(saved)
    except OrcacError:
        return False
    return dump_plan(before.model_copy(update={"eval": EvalPlan()})) == dump_plan(plan.model_copy(update={"eval": EvalPlan()}))


def answer_all(
    name: str, plan, root: Path, held: dict[str, list[Held]], *, db_path: Path | None = None
) -> tuple[dict[str, list[Answer]], str]:
    """Every held-out example answered by one arm; returns (answers per task, model path)."""
    if name == "prompted":
        return _prompted_answers(plan, root, held, db_path)
    model, tokenizer, where, chosen = load_model(name, plan, root)
    examples = [(task, i, h) for task, rows in held.items() for i, h in enumerate(rows)]
    prompts = [
        chat_format.prompt_ids(tokenizer, plan.erase[plan.tasks[task].erase].system, h.prompt)
        for task, _, h in examples
    ]
    started = time.monotonic()

    def progress(done: int) -> None:
        print(f"  {name}: {done}/{len(prompts)} answers, {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)

    with chosen.running(_device()):  # the student's arithmetic, as train ran it (orcac.runtime.models.precision)
        generated = generate(
            model, tokenizer, prompts, max_new_tokens=plan.eval.max_new_tokens, batch_size=plan.eval.batch_size,
            progress=progress,
        )
    answers: dict[str, list[Answer]] = {task: [None] * len(rows) for task, rows in held.items()}
    for (task, i, _), answer in zip(examples, generated, strict=True):
        answers[task][i] = answer
    del model
    return answers, where


def load_model(name: str, plan, root: Path):
    """(model, tokenizer, where, precision) for "base" (the plan's student) or "trained" (train's
    output): in train's precision, applied as train applies it (run it under `precision.running`)."""

    from orcac.runtime.models import loading as hf_models

    student = plan.students[plan.train.student]
    chosen = precision.choose(plan.train.precision, "eval")
    dtype = chosen.weights
    if name == "base":
        model, tokenizer = hf_models.load_causal_lm(student.model, root, dtype=dtype)
        added = chat_format.prepare_tokenizer(tokenizer, student.chat_template)
        if added:
            model.resize_token_embeddings(len(tokenizer))
        where = student.model
    else:
        from orcac.runtime.training.layout import FINAL_DIR

        final = root / plan.train.output / FINAL_DIR
        model, tokenizer = hf_models.load_causal_lm(str(final), dtype=dtype)
        where = str(final)
        if not trained_on(final, plan):
            print(
                f"warning: the trained student in {final} was trained on another version of this plan; "
                "run `orcac train` again to evaluate the current one",
                file=sys.stderr,
            )
    model = chosen.place(model, _device())  # a GGUF file always loads in fp32
    model.eval()
    print(f"  {name}: {chosen}", file=sys.stderr, flush=True)
    return model, tokenizer, where, chosen


def generate(
    model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int, progress=None
) -> list[Answer]:
    """Greedy answers to tokenized prompts, in batches of similar length (orcac.runtime.models.generation)."""
    from orcac.runtime.models.generation import decode, stop_ids

    eos = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding per batch
    out: list[Answer | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        results = decode(model, [prompts[i] for i in chunk], max_new_tokens=max_new_tokens, eos=eos, pad=pad)
        for i, result in zip(chunk, results):
            text = tokenizer.decode(result.tokens, skip_special_tokens=True)
            out[i] = Answer(text=text.strip(), finish_reason=result.finish_reason, new_tokens=result.completion_tokens)
        if progress is not None:
            progress(min(start + batch_size, len(order)))
    return out  # type: ignore[return-value]


def _prompted_answers(plan, root: Path, held: dict[str, list[Held]], db_path: Path | None):
    """The teacher with the full strategy prompt and demonstrations, greedy and as long as the
    other arms, through the teacher runtime. Each answer is asked once (`calls`: kept as it
    arrives, so an eval stopped half-way keeps those it got, and reused by every later eval)."""
    jobs, index = prompted_jobs(plan, held)
    heard = calls.stored(db_path, jobs)
    todo = [job for job_id, job in jobs.items() if job_id not in heard]
    asked, _ = calls.ask(plan, root, db_path, todo, dict.fromkeys((j.id for j in todo), "prompted"), label="prompted")
    heard.update(asked)
    # a call that failed for good: an empty answer, scored as such (the next eval asks again)
    answers = placed(held, index, heard, missing=Answer("", "error", 0))
    print(f"  prompted: {len(jobs) - len(todo)} answers reused, {len(todo)} asked", file=sys.stderr, flush=True)
    models = sorted({plan.teachers[plan.tasks[t].teacher].model for t in held})
    return answers, ", ".join(models)


def placed(held: dict[str, list[Held]], index: dict, heard: dict, *, missing: Answer | None) -> dict[str, list]:
    """task -> the prompted answers in held-out order, from `heard` (job id -> calls.Heard);
    `missing` where a job has none."""
    answers: dict[str, list] = {task: [missing] * len(rows) for task, rows in held.items()}
    for job_id, places in index.items():
        got = heard.get(job_id)
        if got is not None:
            for task, i in places:
                answers[task][i] = Answer(got.text.strip(), got.finish_reason or "stop", got.completion_tokens, job_id)
    return answers


def prompted_jobs(plan, held: dict[str, list[Held]]) -> tuple[dict, dict[str, list[tuple[str, int]]]]:
    """The prompted arm's jobs (job id -> job, each once) and where each answer goes (job id ->
    [(task, index)]): the teacher greedy, as long as the other arms, with the strategy's
    instruction and demonstrations."""
    from orcac.runtime.teachers.jobs import make_job

    jobs, index = {}, {}
    options = {"temperature": 0.0, "max_tokens": plan.eval.max_new_tokens}
    for task, rows in held.items():
        t = plan.tasks[task]
        teacher = plan.teachers[t.teacher]
        for i, h in enumerate(rows):
            job = make_job(teacher, teacher_messages(plan, t.strategy, h.prompt, t.system), options)
            index.setdefault(job.id, []).append((task, i))
            jobs.setdefault(job.id, job)
    return jobs, index


# ---- scoring -----------------------------------------------------------------------------


def correctness(plan, held: Held, answer: Answer) -> Verdict | None:
    """The answer under the task's accept rules but `follows(strategy)` and `judged(NAME)`:
    the form is what adherence measures (counting it twice would score a right answer in
    another form as wrong), and the judges are asked after, about the answers this passes.
    None: the task has no such rule but has others (a judge, a form)."""
    task = plan.tasks[held.task]
    rules = [r for r in task.accept if r.kind not in ("follows", "judged")]
    if rules or not task.accept:
        return check_answer(answer.text, answer.finish_reason, held.gold, rules, allow_truncated=task.allow_truncated)
    return None


def score(plan, held: Held, answer: Answer, judgements: list | None = None) -> Scored:
    """An answer's accuracy and its strategy adherence.

    Accuracy is `correctness`, then, where the task has judges and they were asked
    (`judgements`, one per judge; none for an answer `correctness` rejects), the first judge
    that rejects it. A task with no correctness rule whose judges were not asked has no
    accuracy to measure (None)."""
    task = plan.tasks[held.task]
    rules = plan.strategies[task.strategy].adherence if task.strategy in plan.strategies else ()
    verdict = correctness(plan, held, answer)
    if verdict is not None:
        accepted, reason = verdict.accepted, verdict.reason
    elif judgements is not None:
        accepted, reason = True, "accepted"
    else:
        accepted, reason = None, "no correctness check"
    if accepted and judgements:
        rejected = next((j for j in judgements if not j.accepted), None)
        if rejected is not None:
            accepted, reason = False, rejected.reason
    if rules:
        ok, broken = adheres(answer.text, rules)
    else:
        ok, broken = None, []
    forms = strategy_forms(plan)
    return Scored(held, answer, accepted, reason, ok, tuple(broken), followed(answer.text, forms) if forms else None)


def strategy_forms(plan) -> dict:
    """The plan's strategies that declare a form, by name: the candidates an answer may follow."""
    return {name: s.adherence for name, s in sorted(plan.strategies.items()) if s.adherence}


def strategies_followed(model: str, scored: dict[str, list[Scored]], plan) -> list[dict]:
    """Per task, which strategy's form this arm's answers follow: one row per task with a count
    for each of the plan's strategies that have a form, "none" and "several". Empty when no
    strategy has a form.

    Where the trained student learned each task's own strategy, its row's count sits in the
    column of that task's strategy, as the prompted teacher's does; a student that collapsed
    onto one strategy has every task's count in one column."""
    columns = [*strategy_forms(plan), "none", "several"]
    if len(columns) == 2:
        return []
    rows = []
    for task, items in scored.items():
        counts = dict.fromkeys(columns, 0)
        for s in items:
            if s.follows is not None:
                counts[s.follows] += 1
        rows.append({"model": model, "task": task, "strategy": plan.tasks[task].strategy, "examples": len(items),
                     "counts": counts})
    return rows


def summarise(model: str, scored: dict[str, list[Scored]], plan, scores: dict | None = None) -> list[dict]:
    """One row per task; `scores`: (task, judge) -> the judge's mean score of this arm's answers."""
    rows = []
    for task, items in scored.items():
        n = len(items)
        judged = [s for s in items if s.adheres is not None]
        checked = [s for s in items if s.accepted is not None]
        rows.append(
            {
                "model": model,
                "task": task,
                "strategy": plan.tasks[task].strategy,
                "examples": n,
                "accepted": sum(bool(s.accepted) for s in checked),
                "checked": len(checked),
                "adherent": sum(bool(s.adheres) for s in judged),
                "adherence_n": len(judged),
                "truncated": sum(s.answer.finish_reason == "length" for s in items),
                "accuracy": sum(bool(s.accepted) for s in checked) / len(checked) if checked else None,
                "adherence": (sum(bool(s.adheres) for s in judged) / len(judged)) if judged else None,
                "judge_scores": {j: v for (t, j), v in sorted((scores or {}).items()) if t == task},
            }
        )
    return rows


# ---- output ------------------------------------------------------------------------------


def counts(row: dict, metric: str) -> tuple[int, int]:
    """(hits, n) behind one arm's rate: accepted of those checked, or adherent of those with a form."""
    if metric == "accuracy":
        return row["accepted"], row["checked"]
    return row["adherent"], row.get("adherence_n", row["examples"])


def interval(row: dict, metric: str) -> tuple[float, float] | None:
    """The 95% Wilson interval of one arm's rate (None where the rate is n/a)."""
    if row.get(metric) is None:
        return None
    return wilson(*counts(row, metric))


def outcome(scored: Scored, metric: str) -> bool | None:
    return scored.accepted if metric == "accuracy" else scored.adheres


def paired_outcomes(outcomes: dict[str, dict[str, list[Scored]]], tasks: list[str], metric: str,
                    arms: tuple[str, ...]) -> list[tuple[bool, ...]]:
    """Per held-out row of `tasks` that every arm in `arms` scored on `metric`, their outcomes
    in that order. Rows are matched by (task, row index), so each tuple is one question."""
    by_arm = {
        arm: {(s.held.task, s.held.row_index): outcome(s, metric) for task in tasks for s in outcomes[arm].get(task, ())}
        for arm in arms
    }
    first = by_arm[arms[0]]
    return [
        tuple(by_arm[arm][key] for arm in arms)
        for key in first
        if all(by_arm[arm].get(key) is not None for arm in arms)
    ]


def gaps_closed(summary: list[dict], outcomes: dict[str, dict[str, list[Scored]]] | None = None) -> list[dict]:
    """Per task and overall ("all"), per metric: the three arms' rates and the gap closed,
    and, given the scored answers (`outcomes`), the gap's bootstrap 95% interval over the rows
    all three scored (gap_low, gap_high). Empty unless base, prompted and trained all ran."""
    by = {(r["task"], r["model"]): r for r in summary}
    if not {"base", "prompted", "trained"} <= {r["model"] for r in summary}:
        return []
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    # "all": the tasks every arm answered (prompted leaves out answers from sources)
    common = [t for t in tasks if all((t, m) in by for m in ("base", "prompted", "trained"))]
    out = []
    for task in [*tasks, "all"]:
        if task == "all":
            if not common:
                continue
            arms = {m: _overall([by[(t, m)] for t in common]) for m in ("base", "prompted", "trained")}
        else:
            arms = {m: by.get((task, m)) for m in ("base", "prompted", "trained")}
        if any(row is None for row in arms.values()):
            continue
        for metric in METRICS:
            values = {m: arms[m][metric] for m in arms}
            gap = gap_closed(**values)
            low = high = None
            if outcomes is not None and gap is not None:
                rows = paired_outcomes(outcomes, common if task == "all" else [task], metric, ("base", "prompted", "trained"))
                low, high = bootstrap_gap(rows) or (None, None)
            out.append({"task": task, "metric": metric, **values, "gap_closed": gap, "gap_low": low, "gap_high": high})
    return out


def paired_tests(outcomes: dict[str, dict[str, list[Scored]]]) -> list[dict]:
    """Per task and overall ("all"), per metric: base against trained on the same held-out
    rows, the exact McNemar test on the rows whose outcome differs. `worse`: rows base got
    right and trained wrong; `better`: the other way round. Empty unless both arms ran."""
    if not {"base", "trained"} <= set(outcomes):
        return []
    tasks = [t for t in outcomes["base"] if t in outcomes["trained"]]
    out = []
    for task in [*tasks, "all"] if tasks else []:
        for metric in METRICS:
            rows = paired_outcomes(outcomes, tasks if task == "all" else [task], metric, ("base", "trained"))
            if not rows:
                continue  # the metric is n/a for this task
            worse = sum(base and not trained for base, trained in rows)
            better = sum(trained and not base for base, trained in rows)
            out.append({"task": task, "metric": metric, "pairs": len(rows), "worse": worse, "better": better,
                        "p": mcnemar(worse, better)})
    return out


def show(summary: list[dict], models: list[str], gaps: list[dict] = (), paired: list[dict] = ()) -> None:
    """Per task, per metric: each arm's rate and its 95% interval, the gap closed and its
    interval, and trained against base's paired p; then, one line each, where n is too small
    to tell base and trained apart."""
    from rich.console import Console
    from rich.table import Table

    by = {(r["task"], r["model"]): r for r in summary}
    gap = {(g["task"], g["metric"]): g for g in gaps}
    test = {(t["task"], t["metric"]): t for t in paired}
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    table = Table(
        title="held-out evaluation: base and trained see only the erase message; prompted also sees the strategy "
        "and its demonstrations",
        title_justify="left",
        caption="\\[low-high]: 95% interval (Wilson" + ("; for the gap closed, a bootstrap over rows" if gaps else "")
        + ")" + ("; p: trained against base on the same rows (exact McNemar)" if paired else ""),
        caption_justify="left",
    )
    table.add_column("task", overflow="fold")
    table.add_column("n", justify="right")
    for metric in METRICS:
        for model in models:
            table.add_column(f"{metric}\n{model}", justify="right", no_wrap=True)
        if gaps:
            table.add_column(f"{metric}\ngap closed", justify="right", no_wrap=True)
        if paired:
            table.add_column(f"{metric}\np", justify="right", no_wrap=True)
    for task in tasks + ["all"]:
        if task == "all":
            rows = {m: _overall([by[(t, m)] for t in tasks if (t, m) in by]) for m in models}
        else:
            rows = {m: by.get((task, m)) for m in models}
        n = next((r["examples"] for r in rows.values() if r), 0)
        cells = [task, str(n)]
        for metric in METRICS:
            cells += [_rate(rows[m], metric, n) if rows.get(m) else "" for m in models]
            if gaps:
                cells.append(_gap(gap.get((task, metric))))
            if paired:
                cells.append(_p(test.get((task, metric))))
        table.add_row(*cells, end_section=task == tasks[-1])
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file or a pipe: room for the whole table
    console.print(table)
    for t in paired:  # a bare p above 0.05 reads as "no effect"; say what n can and cannot tell
        line = undecided(t["pairs"], t["worse"], t["better"])
        if line and not (t["task"] == "all" and len(tasks) == 1):  # "all" of one task says it twice
            print(f"{t['task']} {t['metric']}, trained against base: {line}")
    for task in tasks:  # a judged task: its judges' mean score per arm, a finer measure than the pass rate
        for judge in dict.fromkeys(j for m in models if by.get((task, m)) for j in by[(task, m)].get("judge_scores", {})):
            means = [(m, by[(task, m)]["judge_scores"].get(judge)) for m in models if by.get((task, m))]
            shown = ", ".join(f"{m} {'n/a' if v is None else f'{v:.2f}'}" for m, v in means)
            print(f"{task}: mean score of judge {judge}: {shown}")
    if gaps:
        print("gap closed = (trained - base) / (prompted - base): the share of the prompt's effect "
              "the student shows without it", file=sys.stderr)


def _rate(row: dict, metric: str, n: int) -> str:
    """A rate over its 95% interval, in points (and its own n where it is not the row's)."""
    bounds = interval(row, metric)
    if bounds is None:
        return "n/a"
    _, of = counts(row, metric)
    own = f" n={of}" if of != n else ""
    return f"{100 * row[metric]:.0f}%\n[{100 * bounds[0]:.0f}-{100 * bounds[1]:.0f}]{own}"


def show_strategies(rows: list[dict]) -> None:
    """Which strategy's form each arm's answers follow, per task: `strategies_followed`'s rows.
    A task's own strategy is marked with *."""
    if not rows:
        return
    from rich.console import Console
    from rich.table import Table

    columns = list(rows[0]["counts"])
    table = Table(title="the strategy whose form each answer follows", title_justify="left",
                  caption="* the task's own strategy; none: no strategy's form; several: more than one", caption_justify="left")
    table.add_column("task", overflow="fold")
    table.add_column("arm")
    table.add_column("n", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        for i, r in enumerate(mine):
            cells = [f"{r['counts'][c]}{'*' if c == r['strategy'] else ''}" for c in columns]
            table.add_row(task if i == 0 else "", r["model"], str(r["examples"]), *cells, end_section=i == len(mine) - 1)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def _gap(g: dict | None) -> str:
    if g is None or g["gap_closed"] is None:
        return "n/a"
    if g.get("gap_low") is None:
        return f"{g['gap_closed']:.2f}"
    return f"{g['gap_closed']:.2f}\n[{g['gap_low']:.2f}, {g['gap_high']:.2f}]"


def _p(t: dict | None) -> str:
    if t is None:
        return "n/a"
    return "<0.001" if t["p"] < 0.001 else f"{t['p']:.3f}"


def _overall(rows: list[dict]) -> dict:
    """The rows of several tasks as one: counts summed, rates over the summed counts."""
    n = sum(r["examples"] for r in rows)
    judged = [r for r in rows if r["adherence"] is not None]
    adherence_n = sum(r.get("adherence_n", r["examples"]) for r in judged)
    checked = [r for r in rows if r["accuracy"] is not None]
    checked_n = sum(r["checked"] for r in checked)
    accepted = sum(r["accepted"] for r in checked)
    adherent = sum(r["adherent"] for r in judged)
    return {
        "examples": n,
        "accepted": accepted,
        "checked": checked_n,
        "adherent": adherent,
        "adherence_n": adherence_n,
        "accuracy": accepted / checked_n if checked_n else None,
        "adherence": adherent / adherence_n if adherence_n else None,
    }


def _store(db_path: Path, run_id, plan_sha, model, where, rows, scored, seconds, asked=None, judged=None) -> None:
    from orcac.runtime.store.database import open_database

    def bounds(r: dict, metric: str) -> tuple:
        return (counts(r, metric)[1] if r[metric] is not None else None, *(interval(r, metric) or (None, None)))

    con = open_database(db_path)
    try:
        con.executemany(
            "INSERT INTO eval_runs (run_id, model, model_path, task, strategy, examples, accepted, adherent, "
            "truncated, accuracy, adherence, seconds, plan_sha256, created_at, accuracy_n, accuracy_low, "
            "accuracy_high, adherence_n, adherence_low, adherence_high) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?)",
            [
                (run_id, model, where, r["task"], r["strategy"], r["examples"], r["accepted"], r["adherent"], r["truncated"],
                 r["accuracy"], r["adherence"], seconds, plan_sha, *bounds(r, "accuracy"), *bounds(r, "adherence"))
                for r in rows
            ],
        )
        con.executemany(
            "INSERT INTO eval_answers (run_id, model, task, row_index, prompt, gold, answer, finish_reason, "
            "new_tokens, accepted, reason, adheres, broken, job_id, follows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, model, s.held.task, s.held.row_index, s.held.prompt, s.held.gold, s.answer.text,
                 s.answer.finish_reason, s.answer.new_tokens, s.accepted, s.reason, s.adheres, "; ".join(s.broken),
                 s.answer.job_id, s.follows)
                for items in scored.values()
                for s in items
            ],
        )
        if judged:
            judging.store(con, run_id, model, asked, judged)
    finally:
        con.close()


def _store_gaps(db_path: Path, run_id, plan_sha, gaps: list[dict]) -> None:
    if not gaps:
        return
    from orcac.runtime.store.database import open_database

    con = open_database(db_path)
    try:
        con.executemany(
            "INSERT INTO eval_gaps (run_id, task, metric, base, prompted, trained, gap_closed, plan_sha256, "
            "gap_low, gap_high) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, g["task"], g["metric"], g["base"], g["prompted"], g["trained"], g["gap_closed"], plan_sha,
              g.get("gap_low"), g.get("gap_high")) for g in gaps],
        )
    finally:
        con.close()


def _store_paired(db_path: Path, run_id, plan_sha, paired: list[dict]) -> None:
    if not paired:
        return
    from orcac.runtime.store.database import open_database

    con = open_database(db_path)
    try:
        con.executemany(
            "INSERT INTO eval_paired (run_id, task, metric, pairs, worse, better, p_value, plan_sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, t["task"], t["metric"], t["pairs"], t["worse"], t["better"], t["p"], plan_sha) for t in paired],
        )
    finally:
        con.close()


def _chart_path(plan, root: Path, db_path: Path) -> Path:
    if plan.train is not None:
        return root / plan.train.output / "eval.png"
    return db_path.with_suffix(".eval.png")


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
