"""Hub datasets, pinned (issue 19): `hf("org/name", config, split, revision)` through the real
huggingface_hub against a loopback Hub (tests/support/hub.py), and the real command line in a
subprocess (huggingface_hub reads HF_ENDPOINT and its cache folder when it is imported).

A dataset with two revisions on main, a tag, a gated one and one laid out by the Hub's file
naming conventions (no README); `orcac build --dry-run` reads the rows as a build does and
calls nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support.hub import LoopbackHub

ROOT = Path(__file__).resolve().parents[2]

README = b"""---
configs:
- config_name: main
  default: true
  data_files:
  - split: train
    path: main/train-*.jsonl
  - split: test
    path: main/test-*.jsonl
- config_name: socratic
  data_files:
  - split: train
    path: socratic/train-*.jsonl
---
# quiz: questions and answers
"""


def rows(n: int, start: int = 0) -> bytes:
    return "".join(
        json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(start, start + n)
    ).encode()


def quiz_files(n: int, start: int = 0) -> dict[str, bytes]:
    return {
        "README.md": README,
        "main/train-00000.jsonl": rows(n, start),
        "main/test-00000.jsonl": rows(4),
        "socratic/train-00000.jsonl": rows(3),
    }


def spec_text(source: str) -> str:
    return textwrap.dedent(f"""\
        orca 1
        teacher t {{ model = "openai/gpt-4o-mini" api_key = env("NO_SUCH_KEY") }}
        strategy s {{ system = "Be brief." }}
        erase e {{ system = "You are helpful." }}
        task quiz {{
          from     = {source}
          prompt   = "{{{{ question }}}}"
          gold     = "{{{{ answer }}}}"
          strategy = s
          erase    = e
        }}
        """)


@pytest.fixture
def hub():
    with LoopbackHub() as hub:
        hub.first = hub.commit("acme/quiz", quiz_files(20))
        yield hub


class Orcac:
    """`orcac ARGV` in a subprocess, in `folder`, with the loopback Hub's environment."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder, self.env = folder, env

    def __call__(self, *argv: str, **env: str) -> tuple[int, str]:
        full = {**os.environ, "PYTHONPATH": str(ROOT), **self.env, **env}
        full.pop("HF_TOKEN", None) if "HF_TOKEN" not in env else None
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from orcac.cli import main; sys.exit(main(sys.argv[1:]))", *argv],
            cwd=self.folder,
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = done.stdout + done.stderr
        assert "Traceback" not in out and "internal error" not in out, out
        return done.returncode, out

    def spec(self, source: str) -> str:
        (self.folder / "s.orca").write_text(spec_text(source))
        return "s.orca"

    def plan(self) -> dict:
        return yaml.safe_load((self.folder / "s.plan.yaml").read_text())["tasks"]["quiz"]["source"]


@pytest.fixture
def orcac(hub, tmp_path) -> Orcac:
    return Orcac(tmp_path, hub.env(tmp_path))


def test_plan_pins_the_resolved_commit_and_the_files_it_read(hub, orcac):
    spec = orcac.spec('hf("acme/quiz", config = "main", split = "train")')
    code, out = orcac("plan", spec)
    assert code == 0, out
    source = orcac.plan()
    assert source == {
        "kind": "hf",
        "path": None,
        "repo": "acme/quiz",
        "config": "main",
        "split": "train",
        "commit": hub.first,
        "query": None,
        "files": ["main/train-00000.jsonl"],
        "network": False,
        "sha256": hashlib.sha256(rows(20)).hexdigest(),
        "columns": ["question", "answer"],
        "rows": 20,
    }
    assert "revision" not in source  # none in the spec: the commit is the lock


@pytest.mark.slow  # several orcac processes
def test_build_refuses_a_moved_revision_until_replanned(hub, orcac):
    spec = orcac.spec('hf("acme/quiz", split = "train")')
    assert orcac("plan", spec)[0] == 0
    code, out = orcac("build", "s.plan.yaml", "--dry-run")
    assert code == 0, out
    second = hub.commit("acme/quiz", quiz_files(12, start=100))  # main moves
    code, out = orcac("build", "s.plan.yaml", "--dry-run")  # the plan as committed: its commit, or nothing
    assert code == 1
    assert (
        f"hf dataset acme/quiz: revision main moved from {hub.first[:12]} to {second[:12]} since the plan was made"
        in out
    )
    assert "run `orcac plan`" in out
    assert orcac("plan", spec)[0] == 0
    assert orcac.plan()["commit"] == second and orcac.plan()["rows"] == 12
    assert orcac("build", "s.plan.yaml", "--dry-run")[0] == 0


@pytest.mark.slow  # several orcac processes
def test_a_revision_in_the_spec_is_kept_and_resolved(hub, orcac):
    hub.tag("acme/quiz", "v1", hub.first)
    hub.commit("acme/quiz", quiz_files(12, start=100))
    spec = orcac.spec('hf("acme/quiz", split = "train", revision = "v1")')
    assert orcac("plan", spec)[0] == 0
    assert (orcac.plan()["revision"], orcac.plan()["commit"], orcac.plan()["rows"]) == ("v1", hub.first, 20)
    assert orcac("build", "s.plan.yaml", "--dry-run")[0] == 0  # main moved, v1 did not


@pytest.mark.slow  # several orcac processes
def test_offline_reads_the_cache_and_check_needs_no_huggingface_hub(hub, orcac, tmp_path):
    spec = orcac.spec('hf("acme/quiz", config = "main", split = "train")')
    assert orcac("plan", spec)[0] == 0
    served = len(hub.requests)
    offline = {"HF_HUB_OFFLINE": "1"}
    assert orcac("check", spec, **offline) == (0, "s.orca: ok\n")
    code, out = orcac("build", "s.plan.yaml", "--dry-run", **offline)
    assert code == 0, out
    assert len(hub.requests) == served  # nothing asked of the Hub
    # no network (nothing listens there), not told to be offline: the cache too
    code, out = orcac("plan", spec, HF_ENDPOINT="http://127.0.0.1:9")
    assert code == 0, out
    assert orcac.plan()["commit"] == hub.first
    # check reads the cached files' headers by the cache's layout: huggingface_hub is not imported
    probe = (
        "import sys; from orcac.cli import main; code = main(['check', 's.orca']); "
        "sys.exit(code or ('huggingface_hub' in sys.modules) or ('datasets' in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), **orcac.env}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_offline_without_the_dataset_in_the_cache_says_what_to_run(hub, orcac):
    spec = orcac.spec('hf("acme/quiz", config = "main", split = "train")')
    code, out = orcac("plan", spec, HF_HUB_OFFLINE="1")
    assert code == 1
    assert "error: hf dataset acme/quiz (revision main) is not in the Hugging Face cache" in out
    assert "and the Hub is offline" in out and "hf download acme/quiz --repo-type dataset" in out
    assert hub.requests == []


def test_check_never_goes_to_the_hub(hub, orcac):
    """check runs on every keystroke in an editor: a dataset not cached yet is a warning (its
    columns unchecked; check exits 1 on any diagnostic), and nothing is asked of the Hub."""
    spec = orcac.spec('hf("acme/quiz", config = "main", split = "train")')
    code, out = orcac("check", spec)
    assert code == 1, out
    assert "warning: hf dataset acme/quiz is not in the Hugging Face cache yet: its columns are not checked" in out
    assert "`orcac plan` downloads it" in out
    assert hub.requests == []


@pytest.mark.slow  # several orcac processes
def test_gated_dataset_takes_its_token_from_hf_token_only(hub, orcac):
    hub.commit("acme/secret", quiz_files(6))
    hub.gate("acme/secret", token="hf_loopbacksecret")
    spec = orcac.spec('hf("acme/secret", split = "train")')
    # a login saved on the machine (`hf auth login` writes HF_HOME/token) is not used
    Path(orcac.env["HF_HOME"]).mkdir(parents=True, exist_ok=True)
    Path(orcac.env["HF_HOME"], "token").write_text("hf_loopbacksecret")
    code, out = orcac("plan", spec)
    assert code == 1
    assert "hf dataset acme/secret is gated: access was refused" in out and "set HF_TOKEN" in out
    code, out = orcac("plan", spec, HF_TOKEN="hf_wrong")
    assert code == 1 and "refused with the token in HF_TOKEN" in out
    code, out = orcac("plan", spec, HF_TOKEN="hf_loopbacksecret")
    assert code == 0, out
    assert orcac.plan()["rows"] == 6
    written = "".join(
        p.read_text(errors="replace") for p in orcac.folder.rglob("*") if p.is_file() and p.suffix in (".yaml", ".orca")
    )
    assert "hf_loopbacksecret" not in written


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            'hf("acme/quiz", config = "mian", split = "train")',
            ["acme/quiz has no config 'mian'", "did you mean 'main'?"],
        ),
        (
            'hf("acme/quiz", config = "main", split = "tset")',
            ["acme/quiz (main) has no split 'tset'", "did you mean 'test'?"],
        ),
        ('hf("acme/quiz", config = "main")', ["acme/quiz (main) has splits test, train: choose one"]),
        ('hf("acme/quiz", split = "train", revision = "v9")', ["hf dataset acme/quiz has no revision 'v9'"]),
        ('hf("acme/nosuch", split = "train")', ["no dataset acme/nosuch on the Hub"]),
    ],
)
def test_a_wrong_name_is_one_line_with_the_datasets_own_list(orcac, source, expected):
    code, out = orcac("plan", orcac.spec(source))
    assert code == 1
    for text in expected:
        assert text in out


@pytest.mark.slow  # several orcac processes
def test_files_found_by_the_hubs_naming_conventions(hub, orcac):
    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(n: int) -> bytes:
        sink = io.BytesIO()
        pq.write_table(pa.table({"question": [f"q{i}" for i in range(n)], "answer": [str(i) for i in range(n)]}), sink)
        return sink.getvalue()

    hub.commit(
        "acme/plain",
        {
            "data/train-00000-of-00002.parquet": parquet(5),
            "data/train-00001-of-00002.parquet": parquet(3),
            "data/test-00000-of-00001.parquet": parquet(2),
        },
    )
    spec = orcac.spec('hf("acme/plain", split = "train")')
    assert orcac("plan", spec)[0] == 0
    code, out = orcac("check", spec, "--format", "json")  # from the cache: a parquet footer each
    assert code == 0 and json.loads(out)["files"][0]["diagnostics"] == [], out
    source = orcac.plan()
    assert source["files"] == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    assert source["rows"] == 8 and "config" not in source


def test_a_saved_dataset_folder_is_still_local(tmp_path):
    from orcac.sources.hub import is_hub

    (tmp_path / "acme" / "quiz").mkdir(parents=True)
    assert not is_hub("acme/quiz", tmp_path, config=None, revision=None)
    assert is_hub("acme/other", tmp_path, config=None, revision=None)
    assert is_hub("./data", tmp_path, config=None, revision="main")
    assert not is_hub("data/sets/x", tmp_path, config=None, revision=None)


def test_the_readmes_data_files_in_each_form_the_hub_accepts():
    from orcac.sources.hub import pick

    names = ("README.md", "a/train.csv", "a/test.csv", "b/x.jsonl", "c/1.parquet", "c/2.parquet")
    card = {
        "configs": [
            {
                "config_name": "a",
                "data_files": [{"split": "train", "path": "a/train.csv"}, {"split": "test", "path": ["a/test.csv"]}],
            },
            {"config_name": "b", "data_files": "b/*.jsonl"},
            {"config_name": "c", "data_files": {"validation": ["c/*.parquet"]}},
        ]
    }
    assert pick("o/d", names, card, "a", "test") == ("a/test.csv",)
    assert pick("o/d", names, card, "b", None) == ("b/x.jsonl",)
    assert pick("o/d", names, card, "c", None) == ("c/1.parquet", "c/2.parquet")
    assert pick("o/d", ("train.jsonl", "dev.jsonl", "notes.txt"), {}, None, "validation") == ("dev.jsonl",)
