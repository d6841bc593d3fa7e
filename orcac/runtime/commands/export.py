"""`orcac export`: the build's records as chat-messages JSONL, Parquet, or a HF dataset on disk.

Each row is {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role":
"assistant", ...}], "task", "strategy", "split", "row_index", "record_id", "teacher", "gold"}:
the conversational form TRL's SFTTrainer reads as is. The system message is the erase text,
never the strategy's. `--split holdout` writes the held-out examples (system and user only,
with the gold) for evaluation elsewhere; they were never sent to a teacher.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa

from orcac.errors import OrcacError
from orcac.runtime.context import RunContext
from orcac.runtime.store import exports
from orcac.runtime.store.database import Store


def write(table: pa.Table, output: Path, fmt: str) -> None:
    """Write atomically: a half-written export never replaces a good one."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    if fmt == "jsonl":
        import duckdb

        con = duckdb.connect(":memory:")
        con.register("t", table)
        con.execute(f"COPY t TO '{_quote(partial)}' (FORMAT json)")  # one object per line
        con.close()
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, partial)
    elif fmt == "hf":
        import datasets

        shutil.rmtree(partial, ignore_errors=True)
        datasets.Dataset(table).save_to_disk(str(partial))
        shutil.rmtree(output, ignore_errors=True)
    else:
        raise OrcacError(f"unknown export format {fmt!r}")
    os.replace(partial, output)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def command(context: RunContext, args) -> int:
    plan, path = context.plan, context.db
    with Store.open(path, read_only=True, spec=plan.spec) as store:
        table = exports.records(store, plan, args.split)
    if table.num_rows == 0:
        raise OrcacError(
            f"no {args.split} records in {path}",
            hint="run `orcac build` first" if args.split == "train" else "the plan holds out no examples",
        )
    output = Path(args.output)
    write(table, output, args.format)
    print(f"wrote {table.num_rows} {args.split} records to {output} ({args.format})")
    return 0
