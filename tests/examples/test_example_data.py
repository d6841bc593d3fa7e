"""The committed example data is what each examples/*/make_data.py writes, and its gold labels are right."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["cautious_reasoner", "support_triage", "product_qa", "openorca_mix"]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"make_data_{name}", EXAMPLES / name / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _same_pyarrow(parquet: Path) -> bool:
    """Binary outputs only match byte for byte when written by the same pyarrow as the committed ones."""
    return pq.ParquetFile(parquet).metadata.created_by.endswith(f"version {pa.__version__}")


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name", NAMES)
def test_make_data_reproduces_committed_files(name, tmp_path):
    committed = EXAMPLES / name / "data"
    _module(name).write(tmp_path)
    assert _files(tmp_path) == _files(committed)
    binary_exact = _same_pyarrow(EXAMPLES / "product_qa" / "data" / "products.parquet")
    for rel in _files(committed):
        new, old = tmp_path / rel, committed / rel
        if rel.endswith((".parquet", ".arrow")) and not binary_exact:
            if rel.endswith(".parquet"):
                assert pq.read_table(new).equals(pq.read_table(old)), rel
            continue  # the HF dataset's rows are compared below through datasets itself
        assert new.read_bytes() == old.read_bytes(), rel
    if name == "support_triage":
        import datasets

        new, old = (datasets.load_from_disk(str(p / "tickets_hf")) for p in (tmp_path, committed))
        assert new["train"].to_list() == old["train"].to_list()
        state = json.loads((committed / "tickets_hf" / "train" / "state.json").read_text())
        assert state["_fingerprint"] == _module(name).FAQ_FINGERPRINT  # fixed, so state.json is stable


def test_data_dirs_stay_small():
    for name in NAMES:
        total = sum(p.stat().st_size for p in (EXAMPLES / name / "data").rglob("*") if p.is_file())
        assert total < 1_000_000, (name, total)


# ---------------------------------------------------------------- cautious_reasoner
CR = EXAMPLES / "cautious_reasoner" / "data"


def test_arithmetic_rows_and_answers():
    rows = [json.loads(line) for line in (CR / "arithmetic.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 300
    assert all(list(r) == ["id", "question", "answer"] for r in rows)
    assert len({r["id"] for r in rows}) == len({r["question"] for r in rows}) == 300
    built = _module("cautious_reasoner").build()["arithmetic"]
    ops = Counter()
    for row, b in zip(rows, built, strict=True):
        assert (row["id"], row["question"], row["answer"]) == (b["id"], b["question"], b["answer"])
        expr = b["expr"]
        assert re.fullmatch(r"[\d ()+\-*/]+", expr)
        # The numbers in the expression are the numbers in the question, in the same order.
        assert re.findall(r"\d+", expr) == re.findall(r"\d+", row["question"]), row
        value = eval(expr)  # digits and operators only, checked above
        assert value == int(value) and value >= 0, row
        assert row["answer"] == str(int(value)), row
        ops.update(c for c in expr if c in "+-*/")
    assert all(ops[o] >= 20 for o in "+-*/"), ops


def test_false_belief_rows_and_answers():
    rows = _read_csv(CR / "false_belief.csv")
    assert len(rows) == 300 and list(rows[0]) == ["id", "story", "question", "answer"]
    mod = _module("cautious_reasoner")
    containers = mod.CONTAINERS
    assert not any(a != b and a in b for a in containers for b in containers)
    built = mod.build()["false_belief"]
    kinds = Counter()
    for row, b in zip(rows, built, strict=True):
        assert row["story"] == b["story"] and row["answer"] == b["answer"]
        named = [c for c in containers if re.search(rf"\bthe {c}\b", row["story"])]
        assert sorted(named) == sorted([b["c1"], b["c2"]]), row
        # Independent reading of the story: the person who leaves sees nothing unless told or watching.
        person = row["question"].split()[2]  # "Where will X look ..." / "Where does X think ..."
        informed = re.search(rf"\b{person} (?:watches|sees)\b|\b(?:tells|says to) {person}\b", row["story"])
        first = re.search(
            rf"{person} (?:puts|places|hides) the .+? (?:in|inside) the ({'|'.join(containers)})\b", row["story"]
        ).group(1)
        moved = next(c for c in named if c != first)
        assert row["answer"] == (moved if informed else first), row
        kinds[bool(informed)] += 1
    assert 0.2 < kinds[True] / len(rows) < 0.45, kinds


def test_sentiment_rows_and_balance():
    table = pq.read_table(CR / "sentiment.parquet")
    assert table.column_names == ["id", "review", "label"] and table.num_rows == 300
    labels = Counter(table["label"].to_pylist())
    assert labels == {"positive": 150, "negative": 150}
    assert len(set(table["review"].to_pylist())) == 300
    mod = _module("cautious_reasoner")
    for review, label in zip(table["review"].to_pylist(), table["label"].to_pylist()):
        other = "neg" if label == "positive" else "pos"
        phrases = [p for d in mod.DOMAINS.values() for p in d[other]]
        assert not any(p in review for p in phrases), (review, label)


# ---------------------------------------------------------------- support_triage
ST = EXAMPLES / "support_triage" / "data"


def test_tickets_csv():
    rows = _read_csv(ST / "tickets.csv")
    assert len(rows) == 200 and list(rows[0]) == ["id", "subject", "body", "category", "priority"]
    assert Counter(r["category"] for r in rows) == {c: 50 for c in ("billing", "bug", "account", "feature_request")}
    assert set(r["priority"] for r in rows) == {"low", "medium", "high"}
    bodies = [r["body"] for r in rows]
    # Real CSV quoting is exercised: bodies hold line breaks, commas and double quotes.
    assert sum("\n" in b for b in bodies) > 100 and sum('"' in b for b in bodies) > 10
    assert sum("," in b for b in bodies) > 100
    assert len({r["id"] for r in rows}) == 200


def test_faq_dataset():
    import datasets

    ds = datasets.load_from_disk(str(ST / "tickets_hf"))
    assert list(ds) == ["train"] and ds["train"].num_rows == 200
    assert ds["train"].column_names == ["question", "answer"]
    questions = ds["train"]["question"]
    assert len(set(questions)) == 200 and all(q.endswith("?") for q in questions)
    assert not any(re.search(r"\ban [b-df-hj-np-tv-z]|\ba [aeiou]", q) for q in questions if "API" not in q)


# ---------------------------------------------------------------- product_qa
PQ = EXAMPLES / "product_qa" / "data"


def test_products_and_reviews():
    products = pq.read_table(PQ / "products.parquet")
    assert products.column_names == ["sku", "name", "category", "price", "features"]
    assert products.num_rows == 150 and products.schema.field("price").type == pa.float64()
    skus = products["sku"].to_pylist()
    assert len(set(skus)) == 150
    assert all(p > 0 for p in products["price"].to_pylist())
    feats = dict(zip(skus, (f.split("; ") for f in products["features"].to_pylist())))
    reviews = _read_csv(PQ / "reviews.csv")
    assert list(reviews[0]) == ["sku", "rating", "text"] and 380 <= len(reviews) <= 420
    assert {r["sku"] for r in reviews} == set(skus)  # every sku reviewed, none unknown
    assert set(r["rating"] for r in reviews) == {"1", "2", "3", "4", "5"}
    for r in reviews:
        assert any(f in r["text"] for f in feats[r["sku"]]), r
