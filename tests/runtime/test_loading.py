"""Loading models: a GGUF model is dequantised once and read from the model cache after."""

from __future__ import annotations

import pytest
import torch

from orcac.runtime.models import loading

DEMO = "local/smollm2-135m-instruct"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCAC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_gguf(tmp_path):
    """A location whose GGUF file is only bytes: the cache is keyed by them, nothing reads it."""
    path = tmp_path / "models" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF, as far as the cache key goes")
    return loading.ModelLocation(str(path.parent), path.name)


@pytest.mark.slow
def test_the_demo_model_is_dequantised_once_then_read_back_the_same(cache):
    where = loading.resolve(DEMO)
    # a copy cut short (no READY marker) is ignored and replaced
    partial = loading._copy_dir(where)
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{")
    first, tokenizer = loading.load_causal_lm(DEMO)
    assert (partial / loading.READY).is_file() and (partial / "model.safetensors").is_file()
    second, cached_tokenizer = loading.load_causal_lm(DEMO)
    assert second.config._name_or_path == str(partial)
    weights, cached = first.state_dict(), second.state_dict()
    assert weights.keys() == cached.keys() and all(torch.equal(weights[k], cached[k]) for k in weights)
    assert first.generation_config.to_dict() == second.generation_config.to_dict()
    assert not getattr(first, "is_quantized", False) and second.dtype == torch.float32
    messages = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "2 + 2? ünï 🙂"}]
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True) == cached_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True
    )
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        cached_tokenizer.eos_token_id,
        cached_tokenizer.pad_token_id,
    )


@pytest.mark.slow
def test_a_damaged_copy_is_made_again_with_one_note(cache, capsys):
    loading.load_causal_lm(DEMO)
    weights = loading._copy_dir(loading.resolve(DEMO)) / "model.safetensors"
    whole = weights.stat().st_size
    with open(weights, "r+b") as f:  # cut short, as a full disk leaves it
        f.truncate(whole // 2)
    capsys.readouterr()
    model, _ = loading.load_causal_lm(DEMO)
    err = capsys.readouterr().err
    assert "did not load" in err and "dequantising the GGUF file again" in err
    assert weights.stat().st_size == whole and model.dtype == torch.float32


def test_a_kept_copy_is_found_and_a_partial_one_is_not(cache, fake_gguf, tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert loading._cached_copy(fake_gguf) == fake_gguf
    target = loading._copy_dir(fake_gguf)
    target.mkdir(parents=True)  # an interrupted conversion: files, no marker
    assert loading._cached_copy(fake_gguf) == fake_gguf
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
    loading._keep_copy(fake_gguf, model, tokenizer)
    assert loading._cached_copy(fake_gguf) == loading.ModelLocation(str(target))
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no scratch left behind
    # other bytes, another copy
    (fake_gguf_file := loading.Path(fake_gguf.name_or_path) / fake_gguf.gguf_file).write_bytes(b"other bytes")
    assert loading._cached_copy(fake_gguf) == fake_gguf and loading._copy_dir(fake_gguf) != target
    assert fake_gguf_file.is_file()


def test_an_unwritable_cache_is_one_note_and_the_model_still_loads(tmp_path, monkeypatch, fake_gguf, tiny, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ORCAC_CACHE_DIR", str(blocker / "cache"))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
    capsys.readouterr()  # transformers' own loading bar, when an earlier test left it on
    loading._keep_copy(fake_gguf, model, tokenizer)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not keep the dequantised model" in err and "ORCAC_CACHE_DIR" in err
    assert loading._cached_copy(fake_gguf) == fake_gguf


def test_the_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ORCAC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert loading.model_cache() == tmp_path / "xdg" / "orcac"
    monkeypatch.setenv("ORCAC_CACHE_DIR", str(tmp_path / "mine"))
    assert loading.model_cache() == tmp_path / "mine"
