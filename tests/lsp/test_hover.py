"""Hover renders declarations from their fields, so a key added to the language shows up
without a change here; a nested item with long texts (few-shot examples) shows them whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orcac.lsp import hover
from orcac.lsp.analysis import run
from orcac.lsp.locate import at

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_triage" / "triage.orca"


def hover_at(needle: str, offset: int = 1) -> str:
    analysis = run(EXAMPLE, {})
    text = EXAMPLE.read_text()
    before = text[: text.index(needle) + offset]
    line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
    return hover.hover(analysis, at(analysis.module, line, col))


def test_settings_are_shown_as_written():
    text = hover_at("teacher mini", 9)
    assert '- `api_key` = `env("OPENAI_API_KEY")`' in text
    assert "- `timeout` = `30s`" in text
    assert "- `batch_size` = `16` *(default)*" in text


def test_a_strategy_from_another_file_names_it_relative_to_the_spec():
    text = hover_at("strategy = classify", 12)
    assert text.startswith("**strategy** `classify` — common.orca:6")
    assert "Reply with exactly one line" in text


@dataclass(frozen=True)
class _Shot:  # the shape of a few-shot example: long texts in a nested item
    input: str
    output: str


def test_nested_items_with_long_texts_are_shown_whole():
    shots = (_Shot("What is 2 + 2?", "Step 1. Add.\nAnswer: 4"), _Shot("Capital of France?", "Answer: Paris"))
    assert hover._has_long_text(shots[0]) and not hover._has_long_text(shots[1])
    rendered = hover._item_texts(shots[0])
    assert rendered == 'input = `"What is 2 + 2?"`\n\noutput:\n\n```text\nStep 1. Add.\nAnswer: 4\n```'
