"""`orcac eval`: did prompt erasure work? How much of the prompt's effect did the student absorb?

Three arms answer every held-out example of every task, greedy (evaluate/arms.py):

  base      the student before training, with ONLY the erase message as its system prompt;
  prompted  the teacher with everything erasure removes: the strategy's instruction and its
            demonstrations (when teacher and student are the same model, the base model
            prompted), through the teacher runtime, its answers cached by job id;
  trained   the trained student, with only the erase message (what it saw in training).

Each answer is scored for accuracy (the task's accept rules, and its judges where it has
them) and for adherence to its strategy's form, and each is told which strategy's form it
follows (evaluate/scoring.py, evaluate/judging.py). Per task and overall, for both metrics,
the arms are compared on the same rows (evaluate/comparison.py): the share of the gap closed,
`(trained - base) / (prompted - base)`, with its bootstrap interval, and trained against base,
paired (exact McNemar). Every rate has its n and 95% Wilson interval (orcac/stats.py); where n
is too small to tell base and trained apart, a line below the table says so.

Results go to DuckDB (orcac/runtime/store/evaluations.py: `eval_runs`: one row per arm and
task, with each rate's interval; `eval_answers`: every answer, with the strategy it follows;
`eval_gaps`: the gaps and their intervals; `eval_paired`: the paired tests), to tables in the
terminal (evaluate/terminal.py) and to a PNG bar chart with error bars.

The recipe, `Evaluation`, read top to bottom: `setup` (the arms to run, their held-out rows,
every arm's needs checked before the first spends minutes), `evaluate` each arm (answer, judge,
score, store), `compare` (and store) the arms, `show` the tables and chart, `benchmark` (the
standard benchmarks), and `cleanup` (the model card rewritten with these results).
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

from orcac.runtime.commands.evaluate import benchmarks, calls, estimate, judging, stored, terminal
from orcac.runtime.commands.evaluate.arms import (
    Answer,
    arm_tasks,
    arms,
    check_ready,
    placed,
    prompted_answers,
    prompted_jobs,
    require_strategies,
    student_answers,
    trained_on,
)
from orcac.runtime.commands.evaluate.comparison import gaps_closed, paired_tests
from orcac.runtime.commands.evaluate.held_out import Held, held_out
from orcac.runtime.commands.evaluate.scoring import Scored, passes, score_arm, strategies_followed, summarise
from orcac.runtime.context import RunContext
from orcac.runtime.models import chat_format, precision
from orcac.runtime.store import evaluations


def command(context: RunContext, args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if getattr(args, "dry_run", False):
        return dry_run(context, models=models, limit=args.limit)
    return run(context, models=models, limit=args.limit)


def run(context: RunContext, *, models=None, limit: int | None = None) -> int:
    """Score the arms in `models` (default: base, prompted unless the plan turns it off, trained)."""
    evaluation = Evaluation(context)
    evaluation.setup(models, limit=limit)
    for arm in evaluation.arms:
        evaluation.evaluate(arm)
    evaluation.compare()
    evaluation.show()
    evaluation.benchmark()
    evaluation.cleanup()
    return 0


def dry_run(context: RunContext, *, models=None, limit: int | None = None) -> int:
    """`orcac eval --dry-run`: the calls `run` would make and their cost (evaluate/estimate.py)."""
    plan, db_path = context.plan, context.db
    models = arms(plan, models)
    held = held_out(plan, context.root, db_path, limit=limit)
    prompted = arm_tasks("prompted", plan, held) if "prompted" in models else {}
    require_strategies(plan, prompted)
    jobs, index = prompted_jobs(plan, prompted)
    known = placed(prompted, index, calls.stored(db_path, jobs), missing=None)
    lines = estimate.estimate(
        plan,
        db_path,
        models,
        held,
        prompted=(jobs, index),
        prompted_held=prompted,
        prompted_answers=known,
        passes=passes(plan),
    )
    code = estimate.dry_run(lines, models)
    benchmarks.dry_run(plan, models)
    return code


class Evaluation:
    """One `orcac eval`, read top to bottom: what it was handed, the arms and rows it found,
    what each arm scored so far, and how the arms compare."""

    def __init__(self, context: RunContext):
        self.context = context
        self.plan, self.root, self.db, self.plan_sha = context.plan, context.root, context.db, context.plan_sha256
        self.run_id = uuid.uuid4().hex[:12]
        self.arms: list[str] = []
        self.held: dict[str, list[Held]] = {}
        self.limit: int | None = None
        self.summary: list[dict] = []  # one row per arm and task (scoring.summarise)
        self.followed: list[dict] = []  # which strategy's form each arm's answers follow, per task
        self.outcomes: dict[str, dict[str, list[Scored]]] = {}  # arm -> task -> scored answers, for the paired figures
        self.gaps: list[dict] = []
        self.paired: list[dict] = []

    # ---- setup ----------------------------------------------------------------------------

    def setup(self, models: list[str] | None, *, limit: int | None) -> None:
        """The arms and their held-out rows; every arm's needs checked before the first spends minutes."""
        plan, root = self.plan, self.root
        self.arms = arms(plan, models)
        self.limit = limit
        self.held = held_out(plan, root, self.db, limit=limit)
        for name in self.arms:
            check_ready(name, plan, root, self.held)
        benchmarks.check_ready(plan, root, self.arms)
        if plan.eval.judges:
            from orcac.runtime.teachers.calls import require_keys

            require_keys(judging.judge_keys(plan, self.held))
        print(
            f"evaluating {', '.join(self.arms)} on {sum(len(v) for v in self.held.values())} held-out examples "
            f"({', '.join(f'{t} {len(v)}' for t, v in self.held.items())})",
            file=sys.stderr,
            flush=True,
        )

    # ---- each arm: answer, judge, score, store -----------------------------------------------

    def evaluate(self, name: str) -> None:
        """One arm's answers, judged where the plan asks, scored, and stored as soon as they are."""
        plan, root, db_path = self.plan, self.root, self.db
        asked = arm_tasks(name, plan, self.held)
        if not asked:
            print(
                f"  {name}: skipped: every task's answers come from its source, so no teacher is prompted",
                file=sys.stderr,
            )
            return
        started = time.monotonic()
        answers, where = answer_all(name, plan, root, asked, db_path=db_path)
        seconds = time.monotonic() - started
        print(f"  {name}: {sum(len(v) for v in asked.values())} answers in {seconds:.0f}s", file=sys.stderr, flush=True)
        judged = {}
        if plan.eval.judges:  # about the answers that pass the task's other checks
            judged = judging.judge_answers(plan, root, db_path, name, asked, answers, passes=passes(plan))
        scored = score_arm(plan, asked, answers, judged)
        rows = summarise(name, scored, plan, judging.mean_scores(judged))
        with evaluations.writing(db_path) as store:
            evaluations.insert_runs(store, stored.run_rows(self.run_id, self.plan_sha, name, where, seconds, rows))
            evaluations.insert_answers(store, stored.answer_rows(self.run_id, name, scored))
            evaluations.insert_judgements(store, stored.judgement_rows(self.run_id, name, asked, judged))
        self.summary.extend(rows)
        self.outcomes[name] = scored
        self.followed.extend(strategies_followed(name, scored, plan))

    # ---- the arms compared, shown ------------------------------------------------------------

    def compare(self) -> None:
        """The gap closed and trained against base on the same rows, stored."""
        self.gaps = gaps_closed(self.summary, self.outcomes)
        self.paired = paired_tests(self.outcomes)
        if self.gaps or self.paired:
            with evaluations.writing(self.db) as store:
                evaluations.insert_gaps(store, stored.gap_rows(self.run_id, self.plan_sha, self.gaps))
                evaluations.insert_paired(store, stored.paired_rows(self.run_id, self.plan_sha, self.paired))

    def show(self) -> None:
        """The tables in the terminal, and the chart beside the trained student (or the database)."""
        from orcac.runtime import charts

        terminal.show(self.summary, self.arms, self.gaps, self.paired)
        terminal.show_strategies(self.followed)
        plan = self.plan
        if plan.train is not None:
            chart = self.root / plan.train.output / "eval.png"
        else:
            chart = self.db.with_suffix(".eval.png")
        charts.eval_bars(self.summary, chart, title=f"orcac eval: {plan.spec} (held-out rows)", gaps=self.gaps)
        print(f"chart: {chart}", file=sys.stderr)

    def benchmark(self) -> None:
        """The plan's standard benchmarks on the students (evaluate/benchmarks.py), stored and shown."""
        benchmarks.run(
            self.plan,
            self.root,
            self.db,
            self.arms,
            run_id=self.run_id,
            plan_sha=self.plan_sha,
            load=load_model,
            limit=self.limit,
        )

    # ---- cleanup -----------------------------------------------------------------------------

    def cleanup(self) -> None:
        """The trained student's model card, rewritten with these results (orcac/runtime/results/model_card.py)."""
        from orcac.runtime.results import model_card
        from orcac.runtime.training.layout import FINAL_DIR

        if self.plan.train is None:
            return
        final = self.root / self.plan.train.output / FINAL_DIR
        if model_card.write(self.context, final):
            print(f"model card: {final / model_card.CARD}", file=sys.stderr)


# ---- the arms' answers -------------------------------------------------------------------


def answer_all(
    name: str, plan, root: Path, held: dict[str, list[Held]], *, db_path: Path | None = None
) -> tuple[dict[str, list[Answer]], str]:
    """Every held-out example answered by one arm; returns (answers per task, model path)."""
    if name == "prompted":
        return prompted_answers(plan, root, held, db_path)
    model, tokenizer, where, chosen = load_model(name, plan, root)
    # the student's arithmetic, as train ran it (orcac.runtime.models.precision)
    with chosen.running(precision.device()):
        answers = student_answers(name, plan, model, tokenizer, held)
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
    model = chosen.place(model, precision.device())  # a GGUF file always loads in fp32
    model.eval()
    print(f"  {name}: {chosen}", file=sys.stderr, flush=True)
    return model, tokenizer, where, chosen
