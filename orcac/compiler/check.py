"""Pass `check`: sources exist and have the columns the templates read; golds, holdouts, stages;
an instruction that the prompt or answer would carry into the record.

In `check` mode a source is read only as far as its header; in `plan` mode it is read
whole (rows counted, files hashed), and the same checks then use exact row counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from orcac import sampling
from orcac.sources import hub
from orcac.sources.headers import header, hub_header
from orcac.sources.hub import HubData
from orcac.sources.problems import SourceError
from orcac.sources.read import hub_rows, read, sha256_files, source_files
from orcac.specs.diagnostics import Diagnostics, did_you_mean
from orcac.specs.forms import adheres
from orcac.specs.spec import BestOf, SourceExpr, Span, Spec, TaskDecl


@dataclass
class SourceFacts:
    columns: tuple[str, ...] | None  # None: not known (check mode, a Hub dataset not cached yet)
    rows: int | None  # None: unknown without reading the data (check mode)
    files: tuple[Path, ...]
    sha256: str | None = None  # plan mode
    data: list[dict] | None = field(default=None, repr=False)  # plan mode
    hub: HubData | None = None  # a Hub dataset: its commit and the repo files read


@dataclass
class Facts:
    """What the check pass learned, for `lower`: per task its source, and its split sizes."""

    sources: dict[str, SourceFacts] = field(default_factory=dict)  # task name -> facts
    counts: dict[str, tuple[int, int, int, int] | None] = field(default_factory=dict)  # split_sizes()


def _key(s: SourceExpr) -> tuple:
    return (s.kind, s.path, s.split, s.query, s.network, s.config, s.revision)


def check(spec: Spec, base: Path, diags: Diagnostics, *, whole: bool) -> Facts:
    facts = Facts()
    _check_judges(spec, diags)
    _check_forms(spec, diags)
    cache: dict[tuple, SourceFacts | None] = {}
    trained = {ref.name for stage in (spec.train.stages if spec.train else ()) for ref in stage.tasks}
    for task in spec.tasks:
        src = task.source
        if src is None:
            continue
        k = _key(src)
        if k not in cache:
            cache[k] = _read_source(src, base, diags, whole)
        sf = cache[k]
        if sf is None:
            continue
        assert task.holdout is not None  # resolve applied the defaults
        facts.sources[task.name] = sf
        if sf.columns is not None:
            _check_templates(task, sf.columns, diags)
        _check_gold(task, diags)
        _check_instruction(task, diags)
        _check_judged(task, spec, diags)
        _check_sampling(task, spec, diags)
        probe = task.strategy.probe if isinstance(task.strategy, BestOf) else 0
        sizes = None
        best_rows = sf.rows if sf.rows is not None else task.limit
        if task.holdout >= 1.0 and task.name in trained:  # no row count can leave one to train on
            diags.error(
                f"task '{task.name}' has no training rows: holdout = 100% keeps every row back for evaluation",
                task.at("holdout"),
                "lower the holdout share, or take the task out of the training stages",
            )
            sizes = (0, 0, 0, 0)
        elif best_rows is not None:
            sampled_max = best_rows if task.limit is None else min(best_rows, task.limit)
            sizes = sampling.split_sizes(sampled_max, limit=None, holdout=task.holdout, probe=probe)
            if sizes[3] == 0 and task.name in trained:
                why = (
                    "the source has no rows"
                    if sampled_max == 0
                    else (
                        f"holdout = {task.holdout:.0%} of {sampled_max} row{'s' if sampled_max != 1 else ''} leaves none to train on"
                    )
                )
                diags.error(
                    f"task '{task.name}' has no training rows: {why}",
                    task.at("holdout") if sampled_max else task.at("from"),
                    "lower the holdout share or raise the limit",
                )
        # exact when the row count is known; otherwise only a certain zero is worth keeping
        facts.counts[task.name] = sizes if sf.rows is not None or (sizes and sizes[3] == 0) else None
    _check_stages(spec, facts, diags)
    _check_benchmarks(spec, base, diags)
    return facts


def _read_source(src: SourceExpr, base: Path, diags: Diagnostics, whole: bool) -> SourceFacts | None:
    try:
        if (
            src.kind == "hf"
            and src.path is not None
            and hub.is_hub(src.path, base, config=src.config, revision=src.revision)
        ):
            return _read_hub(src, whole, diags)
        if whole:
            files = source_files(src.kind, src.path, src.split, src.query, base, network=src.network)
            columns, rows = read(src.kind, src.path, src.split, src.query, base, network=src.network)
            sha = sha256_files(files, extra=src.query or "" if src.kind == "sql" else "")
            return SourceFacts(columns=columns, rows=len(rows), files=files, sha256=sha, data=rows)
        h = header(src.kind, src.path, src.split, src.query, base, network=src.network)
        return SourceFacts(columns=h.columns, rows=h.rows, files=h.files)
    except SourceError as error:
        diags.error(error.message, src.span, error.hint)
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        diags.error(f"cannot read the source: {error}", src.span)
        return None


def _read_hub(src: SourceExpr, whole: bool, diags: Diagnostics) -> SourceFacts:
    """A Hub dataset: `plan` resolves the revision on the Hub (the cache when offline) and reads
    every row; `check` reads the cached files' headers only, never the network (it runs on every
    keystroke in an editor): a dataset not cached yet is a warning, its columns unchecked."""
    assert src.path is not None  # hf("org/name") always has one
    ask = (src.path, src.config, src.split, src.revision)
    if whole:
        fetched = hub.fetch(*ask)
        columns, rows = hub_rows(fetched)
        return SourceFacts(
            columns=columns,
            rows=len(rows),
            files=fetched.files,
            sha256=sha256_files(fetched.files),
            data=rows,
            hub=fetched,
        )
    data = hub.cached(*ask)
    if data is None:
        shown = f"{src.path}@{src.revision}" if src.revision else src.path
        diags.warning(
            f"hf dataset {shown} is not in the Hugging Face cache yet: its columns are not checked",
            src.span,
            f"`orcac plan` downloads it (only the split read), or `hf download {src.path} --repo-type dataset`",
        )
        return SourceFacts(columns=None, rows=None, files=())
    h = hub_header(data)
    return SourceFacts(columns=h.columns, rows=h.rows, files=h.files, hub=data)


def _sub_span(span: Span, raw: str, needle: str) -> Span:
    """The span of `needle` inside a string token written at `span`, or the whole token."""
    i = raw.find(needle)
    if i < 0:
        return span
    line = span.line + raw.count("\n", 0, i)
    col = (span.col + i) if line == span.line else i - raw.rfind("\n", 0, i)
    return Span(file=span.file, line=line, col=col, end_line=line, end_col=col + len(needle))


_SIMPLE_VAR = re.compile(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")


def template_variables(source: str) -> set[str]:
    """The names a template reads. Templates made only of text and `{{ name }}` are read
    with a regex (most prompts, and Jinja's parser is the front end's slowest step);
    anything else goes through Jinja (raises jinja2.TemplateSyntaxError).

    >>> sorted(template_variables("Q: {{question}} {{ story }}"))
    ['question', 'story']
    """
    rest = _SIMPLE_VAR.sub("", source)
    if "{{" not in rest and "{%" not in rest and "{#" not in rest:
        return set(_SIMPLE_VAR.findall(source))
    from orcac.templates import variables

    return variables(source)


def _check_templates(task: TaskDecl, columns: tuple[str, ...], diags: Diagnostics) -> None:
    import jinja2

    variables = template_variables
    known = set(columns)
    for key, source in (
        ("prompt", task.prompt),
        ("gold", task.gold),
        ("answer", task.answer),
        ("instruction", task.instruction),
    ):
        if source is None:
            continue
        span = task.at(key)
        try:
            used = variables(source)
        except jinja2.TemplateSyntaxError as error:
            _template_error(f"the {key} template", error, span, diags)
            continue
        for name in sorted(used - known):
            hint = did_you_mean(name, columns) or f"the source's columns are: {', '.join(columns) or '(none)'}"
            raw = diags.sources.get(span.file, "")
            raw_token = _token_text(raw, span)
            diags.error(
                f"the {key} uses '{name}', which the source of task '{task.name}' does not have",
                _sub_span(span, raw_token, name) if raw_token else span,
                hint,
            )


def _template_error(what: str, error, span: Span, diags: Diagnostics) -> None:
    """A template that does not parse; a misspelt filter or test is named, with the caret on it."""
    from orcac.templates import unknown_name

    unknown = unknown_name(error)
    if unknown is None:
        diags.error(f"{what} does not parse: {error.message}", span)
        return
    kind, name, known = unknown
    raw = _token_text(diags.sources.get(span.file, ""), span)
    diags.error(
        f"unknown {kind} '{name}' in {what}",
        _sub_span(span, raw, name) if raw else span,
        did_you_mean(name, known) or f"Jinja's {kind}s are: {', '.join(known)}",
    )


def _token_text(text: str, span: Span) -> str:
    lines = text.splitlines(keepends=True)
    if not (1 <= span.line <= len(lines)) or not (1 <= span.end_line <= len(lines)):
        return ""
    start = sum(len(line) for line in lines[: span.line - 1]) + span.col - 1
    end = sum(len(line) for line in lines[: span.end_line - 1]) + span.end_col - 1
    return text[start:end]


def _check_gold(task: TaskDecl, diags: Diagnostics) -> None:
    if task.gold is not None:
        return
    for rule in task.accept or ():
        if rule.uses_gold:
            diags.error(
                f"{rule.kind}(gold) needs a gold answer, and task '{task.name}' has none",
                rule.span,
                'add gold = "{{ column }}" to the task, or use a check without gold (nonempty, regex("..."))',
            )
    if isinstance(task.strategy, BestOf) and task.strategy.by != "judge":
        diags.error(
            f"best_of() scores strategies against the gold answer: a metric needs a gold answer, and task '{task.name}' has none",
            task.strategy.span,
            'add gold = "{{ column }}" to the task, choose by a judge\'s scores (by = judge), or name one strategy',
        )


# ---- judges ------------------------------------------------------------------------------------

RUBRIC_NAMES = ("prompt", "answer", "gold")  # what a judge's rubric sees


def _check_judges(spec: Spec, diags: Diagnostics) -> None:
    """Each judge once: its scale, its threshold inside it, and a rubric that parses, reads
    the answer, and reads nothing but the prompt, the answer and the gold."""
    import jinja2

    for judge in spec.judges:
        if judge.min >= judge.max:
            diags.error(
                f"judge '{judge.name}' has an empty scale: min = {judge.min:g} is not below max = {judge.max:g}",
                judge.at("max") if "max" in judge.spans else judge.at("min"),
                "the scale runs from min (worst) to max (best), e.g. min = 1 max = 10",
            )
        elif not judge.min <= judge.threshold <= judge.max:
            diags.error(
                f"judge '{judge.name}' has threshold = {judge.threshold:g}, outside its scale {judge.min:g}..{judge.max:g}",
                judge.at("threshold"),
                f"an answer is kept when its score is at least the threshold: choose one from {judge.min:g} to {judge.max:g}",
            )
        span = judge.at("rubric")
        try:
            used = template_variables(judge.rubric)
        except jinja2.TemplateSyntaxError as error:
            _template_error(f"the rubric of judge '{judge.name}'", error, span, diags)
            continue
        raw = _token_text(diags.sources.get(span.file, ""), span)
        for name in sorted(used - set(RUBRIC_NAMES)):
            diags.error(
                f"the rubric of judge '{judge.name}' uses '{name}', which a judge is not shown",
                _sub_span(span, raw, name) if raw else span,
                did_you_mean(name, RUBRIC_NAMES)
                or "a rubric sees {{ prompt }} (the task's), {{ answer }} and {{ gold }}",
            )
        if "answer" not in used:
            diags.error(
                f"the rubric of judge '{judge.name}' never shows the judge the answer",
                span,
                "put {{ answer }} where the judge should read the answer it scores",
            )


def _check_judged(task: TaskDecl, spec: Spec, diags: Diagnostics) -> None:
    """A judge whose rubric reads the gold needs a task with one; by = judge needs one judge."""
    judges = {j.name: j for j in spec.judges}
    judged = [rule for rule in task.accept or () if rule.kind == "judged"]
    for rule in judged:
        assert rule.judge is not None  # judged(NAME) always names one
        judge = judges.get(rule.judge.name)
        if judge is None or task.gold is not None:
            continue
        try:
            reads_gold = "gold" in template_variables(judge.rubric)
        except Exception:  # noqa: BLE001 - reported with the judge
            continue
        if reads_gold:
            diags.error(
                f"judge '{judge.name}' shows the judge the gold answer, and task '{task.name}' has none",
                rule.span,
                'add gold = "{{ column }}" to the task, or a rubric without {{ gold }}',
            )
    if isinstance(task.strategy, BestOf) and task.strategy.by == "judge" and len(judged) != 1:
        what = "no judged(NAME) check" if not judged else f"{len(judged)} judged() checks"
        diags.error(
            f"best_of(..., by = judge) chooses by the mean score of the task's judge, and task '{task.name}' has {what}",
            task.strategy.span,
            "give the task exactly one judge in accept = [..., judged(NAME)], or choose by = accept",
        )


def _check_forms(spec: Spec, diags: Diagnostics) -> None:
    """Each demonstration has its own strategy's form (the teacher copies the demonstrations, and
    `follows(strategy)` would reject what it copied); and, among the strategies the tasks use, no
    strategy's form accepts another's demonstrations, or `orcac eval` could not tell which of the
    two an answer follows."""
    for strategy in spec.strategies:
        if not strategy.expect:
            continue
        for number, demonstration in enumerate(strategy.demonstrations, 1):
            ok, broken = adheres(demonstration.assistant, strategy.expect)
            if not ok:
                diags.error(
                    f"demonstration {number} of strategy '{strategy.name}' breaks its own form: {broken[0]}",
                    demonstration.span,
                    "rewrite the demonstration's answer in the form, or change the strategy's expect: "
                    "the teacher copies its demonstrations, and follows(strategy) rejects this form",
                )
    used = {
        named.name
        for task in spec.tasks
        for named in (task.strategy.candidates if isinstance(task.strategy, BestOf) else (task.strategy,))
        if named is not None
    }
    formed = [s for s in spec.strategies if s.name in used and s.expect]
    for strategy in formed:
        for other in formed:
            if other is strategy:
                continue
            for number, demonstration in enumerate(other.demonstrations, 1):
                if (
                    adheres(demonstration.assistant, other.expect)[0]
                    and adheres(demonstration.assistant, strategy.expect)[0]
                ):
                    diags.warning(
                        f"the forms of {strategy.name} and {other.name} do not tell them apart: "
                        f"{strategy.name}'s rules accept {other.name}'s demonstration {number}",
                        strategy.at("expect"),
                        f"add a rule to {strategy.name}'s expect that {other.name}'s answers break, "
                        f"e.g. single_line or no_numbered_steps",
                    )
                    break


def _check_instruction(task: TaskDecl, diags: Diagnostics) -> None:
    """An instruction that is one column (`"{{ system_prompt }}"`), read again by the prompt or
    the answer, would put into every record what erasure takes out of it."""
    whole = _SIMPLE_VAR.fullmatch(task.instruction.strip()) if task.instruction and task.answer else None
    if whole is None:
        return
    import jinja2

    column = whole.group(1)
    for key in ("prompt", "answer"):
        source = getattr(task, key)
        try:
            used = template_variables(source) if source else set()
        except jinja2.TemplateSyntaxError:  # reported by _check_templates
            continue
        if column in used:
            diags.error(
                f"the {key} of task '{task.name}' reads '{column}', the row's instruction, which erasure keeps out of every record",
                task.at(key),
                f"take {{{{ {column} }}}} out of the {key}: the record's system message is the erase message",
            )


def _check_sampling(task: TaskDecl, spec: Spec, diags: Diagnostics) -> None:
    """Several samples need a temperature; `keep` cannot exceed them; follows(strategy) needs a form."""
    if task.samples is not None and task.keep is not None and task.keep > task.samples:
        diags.error(
            f"task '{task.name}' keeps up to {task.keep} answers per example but asks for only {task.samples}",
            task.at("keep"),
            f"set keep to at most samples ({task.samples}), or ask for more samples",
        )
    teacher = next((t for t in spec.teachers if task.teacher and t.name == task.teacher.name), None)
    temperature = task.temperature if task.temperature is not None else teacher.temperature if teacher else None
    if (task.samples or 1) > 1 and temperature == 0:
        diags.error(
            f"task '{task.name}' asks for {task.samples} samples per example at temperature 0: "
            "greedy decoding gives the same answer every time",
            task.at("samples"),
            "set temperature = 0.7 (or so) on the task or its teacher",
        )
    follows = next((rule for rule in task.accept or () if rule.kind == "follows"), None)
    if follows is None or task.strategy is None:
        return
    names = [c.name for c in task.strategy.candidates] if isinstance(task.strategy, BestOf) else [task.strategy.name]
    declared = {s.name: s for s in spec.strategies}
    for name in names:
        if name in declared and not declared[name].expect:
            diags.error(
                f"follows(strategy) needs the form of strategy '{name}', and it declares none",
                follows.span,
                f"add expect = [...] to strategy '{name}' (e.g. [numbered_steps, answer_line])",
            )


def _check_benchmarks(spec: Spec, base: Path, diags: Diagnostics) -> None:
    """A benchmark given as an lm-eval task file must be there (a task's name is lm-eval's to know);
    a benchmarked teacher is a declared one whose weights run here (`local/...`)."""
    if spec.eval is None:
        return
    for name in spec.eval.benchmarks:
        if name.endswith((".yaml", ".yml")) and not (base / name).is_file():
            diags.error(
                f"benchmark task file '{name}' not found",
                spec.eval.at("benchmarks"),
                "write the path of an lm-eval task's YAML file relative to the spec, or an lm-eval task's name",
            )
    if spec.eval.benchmark_teachers and not spec.eval.benchmarks:
        diags.error(
            "benchmark_teachers without benchmarks: there is nothing to run them on",
            spec.eval.at("benchmark_teachers"),
            "add benchmarks = [...] to the eval block",
        )
    teachers = {t.name: t for t in spec.teachers}
    for name in spec.eval.benchmark_teachers:
        teacher = teachers.get(name)
        if teacher is None:
            diags.error(
                f"benchmark_teachers names '{name}', which is not a declared teacher",
                spec.eval.at("benchmark_teachers"),
                did_you_mean(name, list(teachers)) or f"declared teachers: {', '.join(teachers) or '(none)'}",
            )
        elif not teacher.model.startswith("local/"):
            diags.error(
                f"benchmark_teachers: teacher '{name}' ({teacher.model}) is an API, not weights lm-eval can score",
                spec.eval.at("benchmark_teachers"),
                "name a teacher whose model is local/... (in-process), or leave it out",
            )


def _check_stages(spec: Spec, facts: Facts, diags: Diagnostics) -> None:
    if spec.train is None:
        return
    for stage in spec.train.stages:
        trains = []
        for ref in stage.tasks:
            sizes = facts.counts.get(ref.name)
            trains.append(None if sizes is None else sizes[3])
        if trains and all(t == 0 for t in trains):
            diags.error(
                f"stage '{stage.name}' has no training examples: every task in it has 0 training rows",
                stage.span,
                "add a task with training rows to the stage",
            )
