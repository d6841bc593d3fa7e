"""Writing and reading plan files: YAML made to be reviewed in `git diff`.

Deterministic to the byte: model fields in declared order, maps keyed by name sorted,
every multi-line string as a literal `|` block (one changed sentence, one changed line),
no line folding, a trailing newline.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from orcac.errors import OrcacError
from orcac.specs.plan import PLAN_FORMAT, Plan

HEADER = "# Written by `orcac plan`: review it, commit it, do not edit it by hand.\n"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def to_data(plan: Plan) -> dict:
    data = plan.model_dump(mode="json")
    for key in ("teachers", "students", "strategies", "erase", "tasks"):
        data[key] = {k: data[key][k] for k in sorted(data[key])}
    for teacher in data["teachers"].values():
        teacher["params"] = {k: teacher["params"][k] for k in sorted(teacher["params"])}
    data["estimate"]["tasks"] = {k: data["estimate"]["tasks"][k] for k in sorted(data["estimate"]["tasks"])}
    return data


def dump_plan(plan: Plan) -> str:
    """The plan file's text."""
    body = yaml.dump(
        to_data(plan),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 30,
        indent=2,
    )
    return HEADER + body


def read_plan(path: str | Path) -> Plan:
    """Read a plan file written by `orcac plan`."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OrcacError(f"no such plan file: {p}", "write it with: orcac plan SPEC.orca") from None
    except UnicodeDecodeError as error:
        raise OrcacError(
            f"{p} is not a plan file: it is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})",
            "recompile it from its spec with: orcac plan SPEC.orca",
        ) from None
    except OSError as error:
        raise OrcacError(f"cannot read {p}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise OrcacError(f"{p} is not a valid plan file: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise OrcacError(f"{p} is not a plan file")
    if data.get("format") != PLAN_FORMAT:  # checked first: a newer plan's fields would only confuse
        found = data.get("format")
        shown = "no format version" if found is None else f"plan format {found!r}"
        raise OrcacError(
            f"{p} has {shown}; this orcac reads plan format {PLAN_FORMAT}",
            "recompile it from its spec with this orcac: orcac plan SPEC.orca",
        )
    from pydantic import ValidationError

    try:
        return Plan.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise OrcacError(
            f"{p} does not match this orcac's plan format ({where}: {first['msg']})",
            "recompile it from its spec with: orcac plan SPEC.orca",
        ) from None


def plan_sha256(plan: Plan) -> str:
    """The plan's identity, stored by build runs, training and eval so they join on it: the
    sha256 of the plan file's text as `dump_plan` writes it."""
    import hashlib

    return hashlib.sha256(dump_plan(plan).encode("utf-8")).hexdigest()


def write_plan(plan: Plan, output: str | Path) -> bool:
    """Write a plan file (atomically: a reader never sees half of one); returns whether its
    content changed."""
    out = Path(output)
    text = dump_plan(plan)
    if out.is_file() and out.read_text(encoding="utf-8") == text:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return True
