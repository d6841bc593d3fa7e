"""Bad rows, bad values, hostile queries and templates, broken plan files (issue 9): each is
one clear line (or a per-row warning), exit 0 or 1, never an internal error.

Specs are written into a scratch directory and run through the real command line:
`orcac check`, `orcac plan` and `orcac build --dry-run` (which calls nothing).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from orcac.sources.problems import BadRow
from orcac.sources.read import read
from orcac.templates import MAX_RANGE, MAX_STEPS, render

from .helpers import run_cli

HEAD = """\
orca 1
teacher t { model = "openai/gpt-4o-mini" api_key = env("NO_SUCH_KEY") }
strategy s { system = "Be brief." }
strategy other { system = "Be thorough." }
erase e { system = "You are helpful." }
"""


def _spec(tmp_path, body: str, **files: str | bytes):
    for name, content in files.items():
        p = tmp_path / name.replace("__", ".")
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    spec = tmp_path / "s.orca"
    spec.write_text(HEAD + textwrap.dedent(body))
    return spec


def _run(tmp_path, *argv):
    code, out, err = run_cli(*argv, cwd=tmp_path)
    assert "internal error" not in err and "Traceback" not in err, err
    return code, out, err


# ---- item 2: a sql source is one read-only query ------------------------------------------------


@pytest.mark.parametrize("command", [("check",), ("plan",), ("build", "--dry-run")])
def test_sql_copy_cannot_overwrite_the_specs_data(tmp_path, command):
    data = "q,a\nWhat is 1 + 1?,2\n"
    spec = _spec(
        tmp_path,
        """task a { from = sql("COPY (SELECT 'pwned' AS q) TO 'data.csv' (HEADER)") prompt = "{{ q }}" strategy = s }""",
        data__csv=data,
    )
    code, _, err = _run(tmp_path, *command, spec.name)
    assert code == 1
    assert "a sql source is one read-only query (SELECT or WITH ... SELECT); this one is a COPY statement" in err
    assert (tmp_path / "data.csv").read_text() == data


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("ATTACH 'other.duckdb' AS o", "this one is a ATTACH statement"),
        ("EXPORT DATABASE 'dump'", "this one is a EXPORT statement"),
        ("SELECT 1 AS q; COPY (SELECT 1) TO 'x.csv'", "this one is 2 statements"),
        ("INSTALL httpfs", "this one is a LOAD statement"),
        ("SELECT * FROM read_text('/etc/hostname')", "file system operations are disabled by configuration"),
        ("SELECT * FROM read_csv('http://127.0.0.1:9/x')", "file system operations are disabled by configuration"),
        (
            "SELECT * FROM 'https://example.invalid/x.csv'",
            "reads https://example.invalid/x.csv from the network, which a spec must allow",
        ),
        ("SET enable_external_access = true", "this one is a SET statement"),
    ],
)
def test_sql_sources_only_read_the_files_they_name(tmp_path, query, says):
    spec = _spec(tmp_path, f'task a {{ from = sql("{query}") prompt = "{{{{ q }}}}" strategy = s }}')
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1 and says in err, err
    assert (
        not (tmp_path / "other.duckdb").exists()
        and not (tmp_path / "dump").exists()
        and not (tmp_path / "x.csv").exists()
    )


def test_sql_reads_the_files_it_names_and_network_is_an_explicit_opt_in(tmp_path):
    spec = _spec(
        tmp_path,
        """\
        task a { from = sql("SELECT q FROM 'data.csv' ORDER BY q") prompt = "{{ q }}" strategy = s }
        task b { from = sql("SELECT q FROM 'data.csv' ORDER BY q", network = true) prompt = "{{ q }}" strategy = s }
        """,
        data__csv="q\nx\ny\n",
    )
    assert _run(tmp_path, "plan", spec.name)[0] == 0
    plan = (tmp_path / "s.plan.yaml").read_text()
    assert plan.count("network: false") == 1 and plan.count("network: true") == 1
    code, _, err = _run(tmp_path, "check", spec.name.replace("s.orca", "s.orca"))
    assert code == 0


# ---- item 7: a template that fails on one row; bounded template work --------------------------------


FAILING = {
    "zero": ("{{ a // b }}", "ZeroDivisionError"),
    "text_plus_number": ("{{ a + b }}", "TypeError"),
    "huge_range": ("{{ range(10000000)|list|length }}", "range() of 10,000,000 numbers"),
}


@pytest.mark.parametrize("case", FAILING, ids=str)
def test_a_template_failing_on_one_row_is_reported_and_the_others_go_on(tmp_path, case):
    prompt, reason = FAILING[case]
    rows = [{"a": 6, "b": 2}, {"a": 6, "b": 0 if case == "zero" else "x" if case == "text_plus_number" else 3}]
    if case == "huge_range":
        prompt = "{% if b == 3 %}" + prompt + "{% endif %}{{ a }}"
    spec = _spec(
        tmp_path,
        f"""task a {{ from = jsonl("d.jsonl") prompt = "{prompt}" strategy = s }}""",
        d__jsonl="".join(json.dumps(r) + "\n" for r in rows),
    )
    code, out, err = _run(tmp_path, "plan", spec.name)
    assert code == 0
    assert f"warning: task a: row 2 skipped: {reason}" in err
    assert "1 teacher call " in out  # the row that renders is counted, the other is not
    code, out, err = _run(tmp_path, "build", spec.name, "--dry-run")
    assert code == 0
    assert f"warning: task a: row 2 skipped: {reason}" in err
    assert out.splitlines()[1].split()[:2] == ["a", "1"]  # one example


UNBOUNDED = [
    "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**10 }}",
    "{{ 10 ** (10 ** 10) }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ ('x' * 999999)|replace('', 'yy') }}",
    "{{ ('a\nb' * 400000)|indent(100) }}",
    "{{ ('x' * 999999).join(['a', 'b', 'c']) }}",
    "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% for i in range(10000) %}{{ 'y' * 999999 }}{% endfor %}",
    "{{ lipsum(100000) }}",
    "{{ [1, 2] * 10**9 }}",
]

# Run in a child process limited to 2 GB, so that a bound that regresses fails this test
# with a MemoryError instead of taking the machine's memory.
_PROBE = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from orcac.templates import TemplateLimit, render
out = []
for template in json.load(sys.stdin):
    started = time.perf_counter()
    try:
        render(template, {})
        result = "rendered"
    except TemplateLimit:
        result = "limit"
    except BaseException as error:
        result = type(error).__name__
    out.append([result, time.perf_counter() - started])
print(json.dumps(out))
"""


def test_template_work_is_bounded():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PROBE], input=json.dumps(UNBOUNDED), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for template, (result, seconds) in zip(UNBOUNDED, results):
        assert result == "limit", f"{template}: {result}"
        assert seconds < 5, f"{template}: {seconds:.1f}s"


def test_bounded_templates_still_render_what_prompts_do():
    row = {"items": list(range(50)), "price": 25_000_000, "name": "Ada"}
    text = render(
        "{% for i in items %}{{ loop.index }}. {{ i * 2 }}{% if not loop.last %}, {% endif %}{% endfor %}"
        " | {{ '{:,}'.format(price) }} | {{ '%d' % price }} | {{ name|upper|center(9) }} | {{ range(MAX)|sum }}",
        {**row, "MAX": MAX_RANGE},
    )
    assert text.startswith("1. 0, 2. 2") and "| 25,000,000 | 25000000 |    ADA    |" in text
    assert render("{% for i in range(n) %}.{% endfor %}", {"n": MAX_STEPS - 1}) == "." * (MAX_STEPS - 1)


# ---- item 8 and 9: ragged csv rows, malformed jsonl lines, a byte-order mark -------------------------


def test_ragged_csv_rows_are_reported_per_row_and_never_rendered(tmp_path):
    spec = _spec(
        tmp_path,
        """task a { from = csv("d.csv") prompt = "What is {{ x }} + {{ y }}?" strategy = s }""",
        d__csv="x,y\n1,2\n6\n3,4,5\n7,8\n",
    )
    code, out, err = _run(tmp_path, "plan", spec.name)
    assert code == 0
    assert "warning: task a: row 2 skipped: d.csv:3: 1 field, the header has 2" in err
    assert "warning: task a: row 3 skipped: d.csv:4: 3 fields, the header has 2" in err
    assert "2 teacher calls" in out
    code, out, err = _run(tmp_path, "build", spec.name, "--dry-run")
    assert code == 0 and "row 2 skipped" in err and "row 3 skipped" in err
    assert out.splitlines()[1].split()[:2] == ["a", "2"]


def test_malformed_jsonl_lines_are_reported_per_row_like_ragged_csv(tmp_path):
    spec = _spec(
        tmp_path,
        """task a { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s }""",
        d__jsonl='{"q": "one"}\n{"q": oops}\n\n[1, 2]\n{"q": "two"}\n',
    )
    assert _run(tmp_path, "check", spec.name)[0] == 0
    code, out, err = _run(tmp_path, "plan", spec.name)
    assert code == 0
    assert "warning: task a: row 2 skipped: d.jsonl:2: not valid JSON (Expecting value)" in err
    assert "warning: task a: row 3 skipped: d.jsonl:4: not a JSON object" in err
    assert "rows: 4" in (tmp_path / "s.plan.yaml").read_text()  # rows keep their place; the split is the file's
    code, out, err = _run(tmp_path, "build", spec.name, "--dry-run")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["a", "2"]


def test_a_jsonl_file_without_one_object_is_an_error(tmp_path):
    spec = _spec(
        tmp_path, """task a { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s }""", d__jsonl="q,a\n1,2\n"
    )
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1 and "d.jsonl has no JSON object line: the first problem is d.jsonl:1: not valid JSON" in err


def test_rows_are_bad_rows_where_a_line_is_not_a_row(tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n3\n")
    columns, rows = read("csv", "d.csv", None, None, tmp_path)
    assert columns == ("x", "y") and rows == [{"x": "1", "y": "2"}, BadRow("d.csv:3: 1 field, the header has 2")]


def test_a_csv_with_a_byte_order_mark_has_its_first_column(tmp_path):
    spec = _spec(
        tmp_path,
        """task a { from = csv("d.csv") prompt = "{{ story }}" strategy = s }""",
        d__csv="\ufeffstory,x\nonce,1\n".encode(),
    )
    assert _run(tmp_path, "check", spec.name)[:2] == (0, "s.orca: ok\n")
    assert _run(tmp_path, "plan", spec.name)[0] == 0
    assert "- story\n" in (tmp_path / "s.plan.yaml").read_text()


def test_a_data_file_that_is_not_utf8_is_one_line(tmp_path):
    spec = _spec(
        tmp_path, """task a { from = csv("d.csv") prompt = "{{ q }}" strategy = s }""", d__csv=b"q\n\xff\xfe\n"
    )
    code, _, err = _run(tmp_path, "plan", spec.name)
    assert code == 1 and "d.csv is not UTF-8 text (byte 0xff at offset 2)" in err


# ---- item 10: lone surrogates ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("check",), ("plan",), ("build", "--dry-run")])
def test_a_lone_surrogate_is_rejected_with_its_position(tmp_path, command):
    spec = _spec(
        tmp_path,
        r"""
        strategy odd { system = "Be odd \ud800." }
        task a { from = jsonl("d.jsonl") prompt = "{{ q }}" gold = "{{ q }}" strategy = best_of(odd, s) }
        """,
        d__jsonl='{"q": "x"}\n',
    )
    code, _, err = _run(tmp_path, *command, spec.name)
    assert code == 1
    assert "s.orca:7:33: error: '\\ud800' is half of a UTF-16 surrogate pair, not a character" in err


def test_a_surrogate_pair_is_the_character_it_encodes(tmp_path):
    spec = _spec(
        tmp_path,
        r'task a { from = jsonl("d.jsonl") prompt = "{{ q }} \ud83d\ude00" strategy = s }',
        d__jsonl='{"q": "x"}\n',
    )
    assert _run(tmp_path, "plan", spec.name)[0] == 0
    assert "prompt: '{{ q }} \U0001f600'" in (tmp_path / "s.plan.yaml").read_text(encoding="utf-8")


def test_a_lone_surrogate_in_the_data_skips_that_row(tmp_path):
    spec = _spec(
        tmp_path,
        'task a { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s }',
        d__jsonl='{"q": "\\ud800"}\n{"q": "ok"}\n',
    )
    code, out, err = _run(tmp_path, "plan", spec.name)
    assert code == 0 and "row 1 skipped: the rendered text holds a lone surrogate (U+D800)" in err


# ---- item 11: plan files -------------------------------------------------------------------------------


def _planned(tmp_path):
    spec = _spec(
        tmp_path, 'task a { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s }', d__jsonl='{"q": "x"}\n'
    )
    assert _run(tmp_path, "plan", spec.name)[0] == 0
    return tmp_path / "s.plan.yaml"


@pytest.mark.parametrize("command", ["build", "export", "train", "eval"])
def test_a_plan_that_is_not_utf8_is_one_line(tmp_path, command):
    plan = _planned(tmp_path)
    plan.write_bytes(b"\xff\xfe" + plan.read_bytes())
    extra = ("-o", "x.jsonl") if command == "export" else ()
    code, _, err = _run(tmp_path, command, plan.name, *extra)
    assert code == 1
    assert err == (
        "error: s.plan.yaml is not a plan file: it is not UTF-8 text (byte 0xff at offset 0)\n"
        "  to fix this: recompile it from its spec with: orcac plan SPEC.orca\n"
    )


def test_a_plan_of_another_format_is_refused_naming_the_supported_one(tmp_path):
    plan = _planned(tmp_path)
    plan.write_text(plan.read_text().replace("\nformat: 1\n", "\nformat: 99\n"))
    code, _, err = _run(tmp_path, "build", plan.name, "--dry-run")
    assert code == 1
    assert err.splitlines()[0] == "error: s.plan.yaml has plan format 99; this orcac reads plan format 1"


# ---- item 12: counts on the command line ---------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [("build", "--limit", "-1"), ("build", "--limit", "0"), ("eval", "--limit", "x"), ("train", "--max-steps", "0")],
)
def test_a_count_flag_must_be_a_positive_whole_number(tmp_path, argv):
    plan = _planned(tmp_path)
    code, out, err = _run(tmp_path, argv[0], plan.name, *argv[1:])
    assert code == 1 and out == ""
    assert err.splitlines()[0].startswith(f"error: argument {argv[1]}: must be a whole number of at least 1, got ")
    assert err.splitlines()[1] == f"  to fix this: see `orcac {argv[0]} --help`"


# ---- issue 18, items 13 to 20: messages a new user can act on ------------------------------------------


def _first_error(err: str) -> list[str]:
    """The first diagnostic: its 'file:line:col: error: ...' line, the source line, the caret, the hint."""
    return err.splitlines()[:4]


def test_an_import_without_orca_is_pointed_to_the_file_it_names(tmp_path):
    spec = _spec(tmp_path, 'import "std/erase"\n')
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert _first_error(err) == [
        "s.orca:6:1: error: cannot import 'std/erase': only .orca files can be imported",
        '  6 | import "std/erase"',
        "    | ^^^^^^^^^^^^^^^^^^",
        "  did you mean std/erase.orca?",
    ]


def test_a_missing_source_file_is_pointed_to_the_one_of_a_close_name(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tickets.csv").write_text("q\nx\n")
    (tmp_path / "data" / "notes.jsonl").write_text('{"q": "x"}\n')
    spec = _spec(
        tmp_path,
        """\
        task a { from = csv("data/ticket.csv") prompt = "{{ q }}" strategy = s }
        task b { from = jsonl("data/other.jsonl") prompt = "{{ q }}" strategy = s }
        task c { from = sql("SELECT q FROM 'data/tickets.jsonl'") prompt = "{{ q }}" strategy = s }
        """,
    )
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    lines = err.splitlines()
    at = lines.index("s.orca:6:17: error: source file not found: data/ticket.csv")
    assert lines[at + 3] == "  did you mean data/tickets.csv?"
    at = lines.index("s.orca:7:17: error: source file not found: data/other.jsonl")
    assert not lines[at + 3].startswith("  did you mean")  # sharing '.jsonl' with notes.jsonl is not close
    at = lines.index("s.orca:8:17: error: source file not found: data/tickets.jsonl (read by the sql query)")
    assert lines[at + 3] == "  did you mean data/tickets.csv?"


def test_a_comma_between_settings_is_explained(tmp_path):
    spec = _spec(tmp_path, 'task a { from = jsonl("d.jsonl"), prompt = "{{ q }}" strategy = s }\n')
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert _first_error(err) == [
        "s.orca:6:33: error: unexpected ','; expected '}' or a name",
        '  6 | task a { from = jsonl("d.jsonl"), prompt = "{{ q }}" strategy = s }',
        "    |                                 ^",
        "  settings in a block are separated by whitespace or newlines, not ',': take the ',' out",
    ]


def test_an_unknown_template_filter_is_named_with_a_did_you_mean(tmp_path):
    spec = _spec(
        tmp_path,
        'task a { from = jsonl("d.jsonl") prompt = "Q: {{ q | uppr }}" strategy = s }\n',
        d__jsonl='{"q": "x"}\n',
    )
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert _first_error(err) == [
        "s.orca:6:54: error: unknown filter 'uppr' in the prompt template",
        '  6 | task a { from = jsonl("d.jsonl") prompt = "Q: {{ q | uppr }}" strategy = s }',
        "    |                                                      ^^^^",
        "  did you mean 'upper'?",
    ]


def test_epochs_in_the_train_block_is_pointed_to_its_stage(tmp_path):
    spec = _spec(
        tmp_path,
        """\
        task a { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s }
        student st { model = "local/smollm2-135m-instruct" }
        train {
          student = st
          epochs = 2
          stage one { tasks = [a] epochs = 1 }
        }
        """,
        d__jsonl='{"q": "x"}\n',
    )
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert _first_error(err) == [
        "s.orca:10:3: error: unknown key 'epochs' in train",
        "  10 |   epochs = 2",
        "     |   ^^^^^^",
        "  epochs belongs in each stage block: stage NAME { ... epochs = 2 }",
    ]


def test_a_share_over_100_percent_and_an_unknown_task_in_one_stage_are_both_reported(tmp_path):
    spec = _spec(
        tmp_path,
        """\
        task math { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s }
        student st { model = "local/smollm2-135m-instruct" }
        train { student = st stage one { tasks = [math(150%), intent] epochs = 1 } }
        """,
        d__jsonl='{"q": "x"}\n',
    )
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert err.splitlines() == [
        "s.orca:8:48: error: math(150%) asks for more than all of task 'math'",
        "  8 | train { student = st stage one { tasks = [math(150%), intent] epochs = 1 } }",
        "    |                                                ^^^^",
        "  a stage takes at most 100% of a task's records: write math(100%), or just math; "
        "to train on them more than once, raise the stage's epochs",
        "s.orca:8:55: error: unknown task 'intent'",
        "  8 | train { student = st stage one { tasks = [math(150%), intent] epochs = 1 } }",
        "    |                                                       ^^^^^^",
        "  declared tasks: math",
        "2 errors",
    ]


@pytest.mark.parametrize(
    ("specs", "hint"),
    [
        ((), "data holds no .orca file; give the path of a spec (a .orca file)"),
        (("b.orca", "a.orca"), "give one of the specs in it: data/a.orca, data/b.orca"),
    ],
)
def test_a_directory_given_as_a_spec_is_called_a_directory(tmp_path, specs, hint):
    (tmp_path / "data").mkdir()
    for name in specs:
        (tmp_path / "data" / name).write_text(HEAD)
    for command in ("check", "plan", "fmt"):
        code, _, err = _run(tmp_path, command, "data")
        assert code == 1
        assert err == f"error: data is a directory, not a spec\n  {hint}\n"
    for command in (("build", "--dry-run"), ("export", "-o", "out.jsonl"), ("train",), ("eval",), ("report",)):
        code, _, err = _run(tmp_path, *command, "data")
        assert code == 1
        assert err == f"error: data is a directory, not a spec\n  to fix this: {hint}\n"


def test_a_misspelt_teacher_block_is_one_error(tmp_path):
    spec = tmp_path / "s.orca"
    spec.write_text(
        "orca 1\n"
        'teachr t { model = "openai/gpt-4o-mini" }\n'
        'strategy s { system = "Be brief." }\n'
        'erase e { system = "You are helpful." }\n'
        'task a { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s }\n'
        'task b { from = jsonl("d.jsonl") prompt = "{{ q }}" strategy = s teacher = t }\n'
    )
    (tmp_path / "d.jsonl").write_text('{"q": "x"}\n')
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert err.splitlines() == [
        "s.orca:2:1: error: unknown declaration 'teachr'",
        '  2 | teachr t { model = "openai/gpt-4o-mini" }',
        "    | ^^^^^^",
        "  did you mean 'teacher'?",
    ]


def test_a_sql_source_that_cannot_reach_the_network_says_why_on_one_line(tmp_path):
    spec = _spec(
        tmp_path,
        """task a { from = sql("SELECT * FROM 'http://127.0.0.1:9/x.csv'", network = true) prompt = "{{ q }}" strategy = s }\n""",
    )
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    head, line = err.splitlines()[:2]
    assert head.startswith("s.orca:6:17: error: the sql query ") and line.startswith("  6 | task a")
    # Offline, DuckDB cannot download the extension it reads http with; online (or with it
    # installed), the read itself is refused by the closed port: either way the cause is shown.
    assert "Could not establish connection" in head or "connect" in head.lower(), head
    if "extension" in head:
        assert head.startswith(
            "s.orca:6:17: error: the sql query needs DuckDB's 'httpfs' extension, and downloading it from http"
        )
        assert err.splitlines()[3].startswith("  DuckDB downloads the extension a network read needs on its first use")


def test_a_sql_error_of_several_lines_is_shown_whole(tmp_path):
    spec = _spec(
        tmp_path,
        """task a { from = sql("SELECT qq FROM 'd.csv'") prompt = "{{ q }}" strategy = s }\n""",
        d__csv="q\nx\n",
    )
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert err.splitlines()[0] == (
        's.orca:6:17: error: the sql query fails: Binder Error: Referenced column "qq" not found in FROM clause! Candidate bindings: "q"'
    )


def test_a_dry_run_warns_of_an_unset_api_key_and_still_succeeds(tmp_path, monkeypatch):
    """The task's teacher and a judge's teacher, each named with the variable it lacks."""
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    monkeypatch.delenv("NO_JUDGE_KEY", raising=False)
    spec = _spec(
        tmp_path,
        """\
        teacher referee { model = "openai/gpt-4o" api_key = env("NO_JUDGE_KEY") }
        judge fair { teacher = referee rubric = "{{ answer }} Score: N" threshold = 5 }
        task a { from = jsonl("d.jsonl") prompt = "{{ q }}" teacher = t strategy = s accept = judged(fair) }
        """,
        d__jsonl='{"q": "x"}\n',
    )
    warnings = [
        f"warning: teacher {name}: the environment variable {variable} is not set; "
        f"`orcac build` stops at its first call to {name} until it holds the provider's API key"
        for name, variable in (("referee", "NO_JUDGE_KEY"), ("t", "NO_SUCH_KEY"))
    ]
    assert _run(tmp_path, "plan", spec.name)[0] == 0  # a dry run writes no plan: its note aside
    code, out, err = _run(tmp_path, "build", spec.name, "--dry-run")
    assert code == 0 and out.splitlines()[-1] == "dry run: nothing was called"
    assert err.splitlines() == warnings
    monkeypatch.setenv("NO_SUCH_KEY", "sk-test")
    code, out, err = _run(tmp_path, "build", spec.name, "--dry-run")
    assert code == 0 and err.splitlines() == warnings[:1]


# ---- objective = distill: a local teacher, in a distill block ------------------------------------


def _distill_spec(tmp_path, train_body: str):
    return _spec(
        tmp_path,
        f"""\
        teacher lt {{ model = "local/smollm2-135m-instruct" }}
        task a {{ from = jsonl("d.jsonl") prompt = "{{{{ q }}}}" strategy = s teacher = t }}
        student st {{ model = "local/smollm2-135m-instruct" }}
        train {{
          student = st
          {train_body}
          stage one {{ tasks = [a] epochs = 1 }}
        }}
        """,
        d__jsonl='{"q": "x"}\n',
    )


def test_a_distill_teacher_that_is_not_local_is_refused_in_one_line(tmp_path):
    spec = _distill_spec(tmp_path, "objective = distill distill { teacher = t }")
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1
    assert _first_error(err)[0] == (
        "s.orca:11:43: error: distill teacher 't' is 'openai/gpt-4o-mini', not a local model: "
        "its token distributions cannot be read"
    )


def test_the_distill_objective_needs_a_distill_block_and_the_block_needs_the_objective(tmp_path):
    spec = _distill_spec(tmp_path, "objective = distill")
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1 and "error: objective = distill needs a distill block" in _first_error(err)[0]
    spec = _distill_spec(tmp_path, "distill { teacher = lt }")
    code, _, err = _run(tmp_path, "check", spec.name)
    assert code == 1 and "error: a distill block, but the objective is sft" in _first_error(err)[0]


def test_a_local_distill_teacher_compiles_and_is_written_into_the_plan(tmp_path):
    spec = _distill_spec(tmp_path, 'objective = "sft+distill" distill { teacher = lt beta = 0 on_policy = 25% }')
    code, _, err = _run(tmp_path, "plan", spec.name)
    assert code == 0, err
    from orcac.specs.plan_file import read_plan

    train = read_plan(tmp_path / "s.plan.yaml").train
    assert train.objective == "sft+distill"
    assert (train.distill.teacher, train.distill.beta, train.distill.on_policy) == ("lt", 0.0, 0.25)
