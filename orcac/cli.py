"""The `orcac` command line.

Each subcommand's implementation is imported only when it runs, so `orcac check` and
`orcac fmt` never pay for torch, transformers, litellm or duckdb.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
import threading

from orcac import __version__
from orcac.errors import OrcacError, printable

# subcommand -> "module:function"; the function takes the parsed args (a runtime command: the
# run context first, see RUNTIME) and returns an exit code.
COMMANDS = {
    "check": "orcac.compiler.commands:check",
    "fmt": "orcac.compiler.commands:fmt",
    "plan": "orcac.compiler.commands:plan",
    "schema": "orcac.compiler.commands:schema",
    "build": "orcac.runtime.commands.build_records.command:command",
    "export": "orcac.runtime.commands.export:command",
    "train": "orcac.runtime.commands.train.command:command",
    "eval": "orcac.runtime.commands.evaluate.command:command",
    "report": "orcac.runtime.commands.report.command:command",
    "lsp": "orcac.lsp.server:command",
    "cache": "orcac.runtime.commands.cache:command",
}
CANCEL = "orcac.runtime.commands.cancel_batches:command"  # `orcac build --cancel`
# Commands that run a plan: handed a RunContext built here, so the runtime never compiles.
RUNTIME = {"build", "export", "train", "eval", "report"}


def writes_plan(args) -> bool:
    """Whether a runtime command writes the spec's plan file (as `orcac plan` does) before it
    runs: build, train and eval do; their dry runs, export and report only read, so they
    compile the spec in memory and leave the file as it is."""
    return args.command in {"build", "train", "eval"} and not getattr(args, "dry_run", False)


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag reported like every other user error: one line, a hint, exit 1
    (argparse's own exit status 2 is what orcac uses for its internal errors)."""

    def error(self, message: str):
        self.exit(1, f"error: {message}\n  to fix this: see `{self.prog} --help`\n")


def positive_int(text: str) -> int:
    """A count on the command line (`--limit 5`): a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value}")
    return value


@functools.lru_cache(maxsize=1)  # argparse setup is most of an in-process `check` of a small spec
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orcac",
        description="Compile .orca specs into reviewed plans, build prompt-erased data, train and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"orcac {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (`orcac COMMAND --help` for its options)"
    )

    p = sub.add_parser("check", help="report every problem in a spec")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="one or more .orca specs to check")
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text: each problem with its line, for people; json: for editors and scripts (default: %(default)s)",
    )

    p = sub.add_parser("fmt", help="rewrite specs in canonical layout (comments kept)")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="one or more .orca specs, rewritten in place")
    p.add_argument("--check", action="store_true", help="exit 1 if a file is not formatted; write nothing")

    p = sub.add_parser("plan", help="compile a spec into its plan file")
    p.add_argument(
        "specs", nargs="+", metavar="SPEC", help="one or more .orca specs; each gets SPEC.plan.yaml beside it"
    )
    p.add_argument("-o", "--output", help="where to write the plan (default: next to the spec; - for stdout)")
    p.add_argument("--check", action="store_true", help="exit 1 if the plan on disk is stale; write nothing")

    p = sub.add_parser("schema", help="print the JSON Schema of plan files")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")

    p = sub.add_parser("build", help="run the teacher jobs and write prompt-erased records")
    _add_run_args(p)
    p.add_argument("--dry-run", action="store_true", help="print calls, prompt tokens and cost; call nothing")
    p.add_argument(
        "--limit", type=positive_int, metavar="N", help="at most N examples per task, for a quick look (default: all)"
    )
    p.add_argument("--reprobe", action="store_true", help="run strategy probes again even if decided")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live display")
    p.add_argument(
        "--cancel", action="store_true", help="cancel the build's live provider batches (mode = batch) and exit"
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the machine's answer cache (`orcac cache`); the spec's database is still used",
    )

    p = sub.add_parser("export", help="write the training records as JSONL, Parquet or a HF dataset")
    _add_run_args(p)
    p.add_argument(
        "--format",
        choices=["jsonl", "parquet", "hf"],
        default="jsonl",
        help="jsonl: one chat record a line; parquet: one file; hf: a datasets.save_to_disk directory "
        "(default: %(default)s)",
    )
    p.add_argument("-o", "--output", required=True, help="file (jsonl, parquet) or directory (hf); required")
    p.add_argument(
        "--split",
        choices=["train", "holdout"],
        default="train",
        help="train: the records to fine-tune on; holdout: the examples kept back for eval (default: %(default)s)",
    )

    p = sub.add_parser("train", help="fine-tune the student, stage by stage")
    _add_run_args(p)
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="resume the stopped run (the default); with this flag a changed plan is an error instead of a new run",
    )
    again.add_argument(
        "--retrain",
        action="store_true",
        help="train again a student already trained on this plan (its final/ stays until the new one is complete)",
    )
    p.add_argument(
        "--max-steps",
        type=positive_int,
        metavar="N",
        help="stop each stage after N steps, for smoke runs (default: the stage's epochs)",
    )

    p = sub.add_parser("eval", help="score base, prompted and trained models on held-out examples")
    _add_run_args(p)
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated: base, prompted, trained (default: all three; prompted unless eval { prompted = false })",
    )
    p.add_argument(
        "--limit", type=positive_int, metavar="N", help="at most N held-out examples per task (default: all)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the teacher and judge calls eval would make and their cost; run nothing",
    )

    p = sub.add_parser("report", help="write one self-contained HTML page about the build")
    _add_run_args(p)
    p.add_argument("-o", "--output", help="the HTML file (default: <spec>.report.html next to the database)")
    p.add_argument(
        "--sample", type=positive_int, metavar="N", help="answers carried per task and verdict (default: 100)"
    )

    p = sub.add_parser("cache", help="inspect or prune the machine's teacher answer cache")
    p.add_argument(
        "action",
        choices=["info", "prune", "clear"],
        help="info: where, how many, how big; "
        "prune: drop answers unused for --older-than and/or asked of --model; clear: drop them all",
    )
    p.add_argument("--older-than", metavar="AGE", help="prune answers no build has used for AGE (30d, 12h, 2w)")
    p.add_argument(
        "--model", metavar="MODEL", help="prune answers asked of this teacher model (e.g. openai/gpt-4o-mini)"
    )

    p = sub.add_parser("lsp", help="run the language server for editors (LSP over stdio)")
    p.add_argument(
        "--stdio", action="store_true", help="accepted for editors that pass it; stdio is the only transport"
    )
    return parser


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="a .orca spec (compiled first) or a .plan.yaml plan")
    p.add_argument("--db", help="DuckDB file (default: .orca/<spec>.duckdb next to the plan)")


def run_context(spec: str, db: str | None = None, *, write: bool = True):
    """The plan a runtime command runs: a `.orca` spec compiled and its plan written beside it
    (as `orcac plan` does), or a `.plan.yaml` read; with the database (--db, else the default).
    Without `write`, the spec is compiled in memory, and a plan file that differs from it gets
    one line saying so (and what rewrites it) instead of being rewritten."""
    from pathlib import Path

    from orcac import compiler
    from orcac.runtime.context import RunContext

    if Path(spec).is_dir():
        from orcac.compiler.load import directory_hint

        raise OrcacError(f"{spec} is a directory, not a spec", hint=directory_hint(Path(spec), spec))
    if not Path(spec).is_file():
        raise OrcacError(f"{spec}: no such file")
    loaded = compiler.load_plan(spec, write=write)
    if loaded.on_disk != "up to date":  # worded as `orcac plan --check` words it
        verb = "rewrite" if loaded.on_disk == "stale" else "write"
        print(
            f"note: {loaded.path}: {loaded.on_disk}; this command reads {spec} as it is now and writes "
            f"no plan; {verb} it with: orcac plan {spec}",
            file=sys.stderr,
        )
    return RunContext.of(loaded.plan, loaded.path, db=db, recompile=compiler.compile_spec)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`, a CI runner or a scheduler stopping the job), handled as Ctrl-C
    is: the command stops where it is, saves what is finished, and marks its run interrupted.
    Python's default for SIGTERM is to die on the spot, which left a train run 'running'."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices online
    # Not when embedded in a program that handles SIGTERM itself, nor off the main thread
    # (where Python allows no signal handlers).
    handle = (
        threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )
    if handle:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv)
    finally:
        if handle:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # `build --cancel` is its own command (it asks the provider, it builds nothing)
    entry = CANCEL if args.command == "build" and getattr(args, "cancel", False) else COMMANDS[args.command]
    module_name, function_name = entry.split(":")
    try:
        command = getattr(importlib.import_module(module_name), function_name)
        if args.command in RUNTIME:
            return int(command(run_context(args.spec, args.db, write=writes_plan(args)), args) or 0)
        return int(command(args) or 0)
    except OrcacError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        print("interrupted: everything finished so far is saved; run the same command to resume", file=sys.stderr)
        return 143 if isinstance(interrupt, Terminated) else 130  # 128 + the signal, as shells report it
    except BrokenPipeError:
        return 1
    except Exception as error:  # a bug in orcac, not in the user's input
        if os.environ.get("ORCAC_DEBUG"):
            raise
        print(f"internal error: {type(error).__name__}: {printable(error)}", file=sys.stderr)
        print("  this is a bug in orcac; run again with ORCAC_DEBUG=1 for the traceback", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
