"""`orcac eval`'s results as rows of eval's tables, keyed by column
(orcac/runtime/store/evaluations.py writes them): an arm's summary with each rate's n and
interval, its scored answers and judges' verdicts, and the gaps and paired tests."""

from __future__ import annotations

from orcac.runtime.commands.evaluate.judging import EvalJudgement
from orcac.runtime.commands.evaluate.scoring import Scored, counts, interval


def run_rows(run_id: str, plan_sha: str, model: str, where: str, seconds: float, summary: list[dict]) -> list[dict]:
    """`eval_runs`: one per task of one arm."""

    def bounds(r: dict, metric: str) -> dict:
        low, high = interval(r, metric) or (None, None)
        n = counts(r, metric)[1] if r[metric] is not None else None
        return {f"{metric}_n": n, f"{metric}_low": low, f"{metric}_high": high}

    return [
        {
            "run_id": run_id,
            "model": model,
            "model_path": where,
            "task": r["task"],
            "strategy": r["strategy"],
            "examples": r["examples"],
            "accepted": r["accepted"],
            "adherent": r["adherent"],
            "truncated": r["truncated"],
            "accuracy": r["accuracy"],
            "adherence": r["adherence"],
            "seconds": seconds,
            "plan_sha256": plan_sha,
            **bounds(r, "accuracy"),
            **bounds(r, "adherence"),
        }
        for r in summary
    ]


def answer_rows(run_id: str, model: str, scored: dict[str, list[Scored]]) -> list[dict]:
    """`eval_answers`: every answer of one arm, scored."""
    return [
        {
            "run_id": run_id,
            "model": model,
            "task": s.held.task,
            "row_index": s.held.row_index,
            "prompt": s.held.prompt,
            "gold": s.held.gold,
            "answer": s.answer.text,
            "finish_reason": s.answer.finish_reason,
            "new_tokens": s.answer.new_tokens,
            "accepted": s.accepted,
            "reason": s.reason,
            "adheres": s.adheres,
            "broken": "; ".join(s.broken),
            "job_id": s.answer.job_id,
            "follows": s.follows,
        }
        for items in scored.values()
        for s in items
    ]


def judgement_rows(
    run_id: str, model: str, asked: dict, judged: dict[tuple[str, int], list[EvalJudgement]]
) -> list[dict]:
    """`eval_judgements`: one arm's verdicts, a row per answer and judge."""
    return [
        {
            "run_id": run_id,
            "model": model,
            "task": task,
            "row_index": asked[task][i].row_index,
            "judge": j.judge,
            "job_id": j.job_id,
            "score": j.score,
            "reasoning": j.reasoning,
            "accepted": j.accepted,
            "reason": j.reason,
        }
        for (task, i), found in judged.items()
        for j in found
    ]


def gap_rows(run_id: str, plan_sha: str, gaps: list[dict]) -> list[dict]:
    """`eval_gaps`: comparison.gaps_closed's rows."""
    return [
        {
            "run_id": run_id,
            "task": g["task"],
            "metric": g["metric"],
            "base": g["base"],
            "prompted": g["prompted"],
            "trained": g["trained"],
            "gap_closed": g["gap_closed"],
            "plan_sha256": plan_sha,
            "gap_low": g.get("gap_low"),
            "gap_high": g.get("gap_high"),
        }
        for g in gaps
    ]


def paired_rows(run_id: str, plan_sha: str, paired: list[dict]) -> list[dict]:
    """`eval_paired`: comparison.paired_tests's rows."""
    return [
        {
            "run_id": run_id,
            "task": t["task"],
            "metric": t["metric"],
            "pairs": t["pairs"],
            "worse": t["worse"],
            "better": t["better"],
            "p_value": t["p"],
            "plan_sha256": plan_sha,
        }
        for t in paired
    ]
