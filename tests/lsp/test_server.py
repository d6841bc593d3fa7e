"""`orcac lsp` end to end: a real LSP client (pytest-lsp) talks to `orcac lsp` over stdio."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from orcac.compiler.load import STDLIB

COMMON = """\
orca 1

strategy terse {
  system = \"\"\"
    Answer in one line.
    Reply with "Answer: <answer>".
  \"\"\"
}

erase plain {
  system = "You are a careful assistant."
}
"""

SPEC = """\
orca 1

import "std/strategies.orca"
import "common.orca"

teacher t {
  model = "local/tiny"
}

defaults {
  erase = plain
  seed  = 7
}

task capitals {
  from     = jsonl("rows.jsonl")
  prompt   = "What is the capital of {{ country }}?"
  gold     = "{{ capital }}"
  strategy = step_by_step
  accept   = contains(gold)
}

task short {
  from     = jsonl("rows.jsonl")
  prompt   = "{{ country }}"
  strategy = terse
}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "rows.jsonl").write_text('{"country": "France", "capital": "Paris"}\n')
    (tmp_path / "common.orca").write_text(COMMON)
    spec = tmp_path / "spec.orca"
    spec.write_text(SPEC)
    return spec


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "orcac.cli", "lsp"]))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=pytest_lsp.client_capabilities("visual-studio-code"))
    )
    yield
    await lsp_client.shutdown_session()


async def open_and_wait(client: LanguageClient, path: Path, text: str | None = None) -> list[types.Diagnostic]:
    uri = from_fs_path(str(path))
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="orca", version=1, text=text or path.read_text())
        )
    )
    return await diagnostics_for(client, uri)


async def diagnostics_for(client: LanguageClient, uri: str) -> list[types.Diagnostic]:
    while True:
        params = await asyncio.wait_for(client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS), 20)
        if params.uri == uri:
            return list(params.diagnostics)


def change(client: LanguageClient, path: Path, text: str, version: int) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=from_fs_path(str(path)), version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def position_of(text: str, needle: str, offset: int = 0) -> types.Position:
    before = text[: text.index(needle) + offset]
    return types.Position(line=before.count("\n"), character=len(before) - (before.rfind("\n") + 1))


def check_json(path: Path) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "orcac.cli", "check", "--format", "json", str(path)], capture_output=True, text=True
    )
    return json.loads(done.stdout)["files"][0]["diagnostics"]


async def test_a_clean_spec_has_no_diagnostics(client: LanguageClient, project: Path):
    assert await open_and_wait(client, project) == []


async def test_diagnostics_match_orcac_check_and_clear_when_fixed(client: LanguageClient, project: Path):
    broken = SPEC.replace("strategy = step_by_step", "strategy = step_by_stpe").replace(
        '"{{ country }}"', '"{{ contry }}"'
    )
    project.write_text(broken)  # for `orcac check`; the server reads the buffer
    expected = check_json(project)
    assert len(expected) == 2

    got = await open_and_wait(client, project, broken)

    assert [
        (d.range.start.line + 1, d.range.start.character + 1, d.range.end.line + 1, d.range.end.character + 1)
        for d in got
    ] == [(e["line"], e["column"], e["end_line"], e["end_column"]) for e in expected]
    assert [d.message for d in got] == [e["message"] + (f"\n{e['hint']}" if e["hint"] else "") for e in expected]
    assert "unknown strategy 'step_by_stpe'\ndid you mean 'step_by_step'?" in [d.message for d in got]
    assert all(d.severity == types.DiagnosticSeverity.Error and d.source == "orcac" for d in got)

    change(client, project, SPEC, 2)  # typed, not saved: the buffer is what counts
    assert await diagnostics_for(client, from_fs_path(str(project))) == []


async def test_a_syntax_error_while_typing(client: LanguageClient, project: Path):
    await open_and_wait(client, project)
    change(client, project, SPEC.replace('model = "local/tiny"', "model = "), 2)
    (d,) = await diagnostics_for(client, from_fs_path(str(project)))
    assert d.message.startswith("unexpected '}'; expected a value")
    assert d.range.start.line == SPEC.splitlines().index("}")


async def test_an_error_in_an_unsaved_import_shows_in_that_file(client: LanguageClient, project: Path):
    common = project.with_name("common.orca")
    await open_and_wait(client, project)
    await open_and_wait(client, common)
    change(client, common, COMMON.replace('system = "You', 'sytem = "You'), 2)
    diagnostics = await diagnostics_for(client, from_fs_path(str(common)))
    assert [d.message.splitlines()[0] for d in diagnostics] == [
        "unknown key 'sytem' in erase 'plain'",
        "erase 'plain' needs 'system'",
    ]


async def test_hover_shows_strategy_text_erase_text_and_resolved_task(client: LanguageClient, project: Path):
    uri = from_fs_path(str(project))
    await open_and_wait(client, project)

    strategy = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(SPEC, "step_by_step", 3)
        )
    )
    assert "**strategy** `step_by_step` — std/strategies.orca:" in strategy.contents.value
    assert "Solve the problem by thinking step by step." in strategy.contents.value

    erase = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(SPEC, "plain", 1))
    )
    assert "You are a careful assistant." in erase.contents.value

    task = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(SPEC, "capitals", 2)
        )
    )
    text = task.contents.value
    assert "- `teacher` = `t` *(default)*" in text  # the only teacher declared
    assert "- `erase` = `plain` *(from defaults)*" in text
    assert "- `seed` = `7` *(from defaults)*" in text
    assert "- `strategy` = `step_by_step`\n" in text
    assert '- `from` = `jsonl("rows.jsonl")`' in text


async def test_go_to_definition_across_imports_and_into_the_stdlib(client: LanguageClient, project: Path):
    uri = from_fs_path(str(project))
    await open_and_wait(client, project)

    async def definition(needle: str, offset: int = 1) -> types.Location:
        return await client.text_document_definition_async(
            types.DefinitionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(SPEC, needle, offset)
            )
        )

    std = await definition("step_by_step")
    assert std.uri == from_fs_path(str(STDLIB / "strategies.orca"))
    std_lines = (STDLIB / "strategies.orca").read_text().splitlines()
    assert std_lines[std.range.start.line][std.range.start.character :].startswith("step_by_step {")

    local = await definition("= terse", 3)
    assert local.uri == from_fs_path(str(project.with_name("common.orca")))
    assert local.range.start == types.Position(line=2, character=9)

    imported = await definition('"common.orca"')
    assert imported.uri == from_fs_path(str(project.with_name("common.orca")))
    assert (await definition('"std/strategies.orca"')).uri == from_fs_path(str(STDLIB / "strategies.orca"))


async def test_format_rewrites_the_buffer_as_orcac_fmt_does(client: LanguageClient, project: Path):
    from orcac.compiler.fmt import format_text

    messy = SPEC.replace("  seed  = 7", "seed=7").replace(
        '  model = "local/tiny"', 'model="local/tiny"   # the teacher'
    )
    await open_and_wait(client, project, messy)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=from_fs_path(str(project))),
            options=types.FormattingOptions(tab_size=2, insert_spaces=True),
        )
    )
    (edit,) = edits
    assert edit.range.start == types.Position(line=0, character=0)
    assert edit.new_text == format_text(messy, str(project))
    assert '  model = "local/tiny"  # the teacher\n' in edit.new_text


async def test_completion_offers_keys_and_declared_names(client: LanguageClient, project: Path):
    uri = from_fs_path(str(project))
    await open_and_wait(client, project)

    async def labels(text: str, needle: str, offset: int) -> set[str]:
        change(client, project, text, 2)
        await diagnostics_for(client, uri)
        result = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=position_of(text, needle, offset)
            )
        )
        return {item.label for item in result.items}

    typing_key = SPEC.replace('  model = "local/tiny"\n', '  model = "local/tiny"\n  tem\n')
    keys = await labels(typing_key, "  tem\n", 5)
    assert {"temperature", "max_tokens", "api_key", "params"} <= keys and "prompt" not in keys

    typing_strategy = SPEC.replace("strategy = terse", "strategy = te")
    names = await labels(typing_strategy, "strategy = te", len("strategy = te"))
    assert {"terse", "step_by_step", "direct_answer", "best_of"} <= names and "plain" not in names

    typing_top = SPEC + "\nta"
    assert {"task", "teacher", "train", "import"} <= await labels(typing_top, "\nta", 3)


async def test_format_leaves_a_spec_with_a_syntax_error_alone(client: LanguageClient, project: Path):
    await open_and_wait(client, project, SPEC + "task {")
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=from_fs_path(str(project))),
            options=types.FormattingOptions(tab_size=2, insert_spaces=True),
        )
    )
    assert not edits


async def test_closing_a_spec_clears_its_diagnostics(client: LanguageClient, project: Path):
    uri = from_fs_path(str(project))
    assert await open_and_wait(client, project, SPEC.replace("seed  = 7", "seed  = -7"))
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert await diagnostics_for(client, uri) == []


async def test_columns_count_utf16_units_as_vs_code_does(client: LanguageClient, project: Path):
    broken = SPEC.replace('  model = "local/tiny"', '  model = "🙂 local" temprature = 1')
    project.write_text(broken)
    expected = next(e for e in check_json(project) if "temprature" in e["message"])
    got = next(d for d in await open_and_wait(client, project, broken) if "temprature" in d.message)
    line = broken.splitlines()[expected["line"] - 1]

    def utf16(column: int) -> int:
        return len(line[: column - 1].encode("utf-16-le")) // 2

    assert utf16(expected["column"]) == (expected["column"] - 1) + 1  # 0-based, and the emoji is two units
    assert (got.range.start.character, got.range.end.character) == (
        utf16(expected["column"]),
        utf16(expected["end_column"]),
    )
