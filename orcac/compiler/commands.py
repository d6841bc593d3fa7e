"""`orcac check`, `orcac fmt`, `orcac plan`, `orcac schema`: each takes parsed args, returns an exit code.

Nothing here imports torch, transformers, litellm, duckdb or datasets; `check` must stay
about as fast as importing lark, pydantic and jinja2.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

from orcac.compiler import compile_spec, diagnose, dump_plan, plan_path_for
from orcac.errors import OrcacError
from orcac.specs.diagnostics import CompileError, render


def check(args) -> int:
    results = {}
    sources: dict[str, str] = {}
    for spec in args.specs:
        d = diagnose(spec)
        results[spec] = d.items
        sources.update(d.sources)
    failed = any(results.values())
    if args.format == "json":
        out = {
            "ok": not failed,
            "files": [
                {"file": spec, "ok": not diags, "diagnostics": [d.as_dict() for d in diags]}
                for spec, diags in results.items()
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        for spec, diags in results.items():
            if diags:
                print(render(diags, sources), file=sys.stderr)
            else:
                print(f"{spec}: ok")
    return 1 if failed else 0


def plan(args) -> int:
    if args.output and len(args.specs) > 1:
        raise OrcacError("-o names one plan file, but several specs were given", hint="give one SPEC with -o")
    if args.output == "-" and args.check:
        raise OrcacError("--check compares with a plan file, but -o - writes to stdout", hint="drop -o - or --check")
    # Several specs (a pre-commit hook passes every changed .orca file): the worst status wins.
    return max(_plan_one(Path(spec), args) for spec in args.specs)


def _plan_one(spec: Path, args) -> int:
    to_stdout = args.output == "-"
    # Paths in a plan are relative to the plan file; on stdout, to where `orcac plan` would write it.
    out = Path(args.output) if args.output and not to_stdout else plan_path_for(spec)
    warnings: list = []
    compiled = compile_spec(spec, out, warnings=warnings)
    if warnings:
        print(render(warnings, {}), file=sys.stderr)
    text = dump_plan(compiled)
    if to_stdout:
        sys.stdout.write(text)
        return 0
    if not compiled.tasks and not out.is_file():
        # A file of shared declarations (others import it): a plan of nothing would only be noise
        # in review. --check says the same, so a pre-commit hook and `orcac plan` agree.
        print(f"{spec}: no tasks, so no plan: a file other specs import")
        return 0
    if args.check:
        old = out.read_text(encoding="utf-8") if out.is_file() else None
        if old == text:
            print(f"{out}: up to date")
            return 0
        if old is None:
            print(f"{out}: missing; write it with: orcac plan {spec}", file=sys.stderr)
            return 1
        diff = difflib.unified_diff(
            old.splitlines(True), text.splitlines(True), f"{out} (on disk)", f"{out} (from {spec})", n=1
        )
        lines = list(diff)
        sys.stdout.writelines(lines[:80])
        if len(lines) > 80:
            print(f"... {len(lines) - 80} more diff lines")
        print(f"{out}: stale; rewrite it with: orcac plan {spec}", file=sys.stderr)
        return 1
    from orcac.compiler import write_plan

    changed = write_plan(compiled, out)
    e = compiled.estimate
    cost = "unknown" if e.cost is None else f"${e.cost:.4f}"
    given = f", {_count(e.from_source, 'answer')} from sources" if e.from_source else ""
    judged = f", up to {_count(e.judge_calls, 'judge call')}" if e.judge_calls else ""
    print(
        f"{out}: {'written' if changed else 'unchanged'}; {_count(len(compiled.tasks), 'task')}, "
        f"{_count(e.calls, 'teacher call')} ({e.probe_calls} probe){judged}{given}, ~{e.prompt_tokens:,} prompt tokens, "
        f"cost {cost}"
    )
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def schema(args) -> int:
    text = schema_text()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def schema_text() -> str:
    from orcac.specs.plan import Plan

    return json.dumps(Plan.model_json_schema(), indent=2, sort_keys=True) + "\n"


def fmt(args) -> int:
    from orcac.compiler.fmt import format_text
    from orcac.compiler.load import directory_hint

    unformatted = []
    errors = []
    for spec in args.specs:
        p = Path(spec)
        if p.is_dir():
            errors.append(f"error: {spec} is a directory, not a spec\n  {directory_hint(p, spec)}")
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            errors.append(f"error: cannot read {spec}: {error}")
            continue
        try:
            new = format_text(text, spec)
        except CompileError as error:
            errors.append(error.render())
            continue
        if new != text:
            unformatted.append(spec)
            if not args.check:
                p.write_text(new, encoding="utf-8")
    for e in errors:
        print(e, file=sys.stderr)
    if args.check:
        for spec in unformatted:
            print(f"{spec}: not formatted; run: orcac fmt {spec}", file=sys.stderr)
        return 1 if unformatted or errors else 0
    for spec in unformatted:
        print(f"{spec}: formatted")
    return 1 if errors else 0
