"""The student as train uses it: loaded once with a chat template and a pad token, a later
stage's starting weights loaded from disk, a fingerprint of its weights, and whether packed
examples are isolated on it.

Packing puts several examples in one row (a pack) without a padding token between them. Each
keeps its own position ids (0, 1, ...) and there is no attention mask, from which transformers
builds a block-diagonal causal mask for the sdpa, eager and flash kernels, so no example
attends to another; each pack is a row of its own in the batch (orcac/runtime/training/batches.py:
laid end to end, attention would cost the square of the whole batch). `isolation_check`
verifies that on the loaded student before training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orcac.runtime.models import chat_format


@dataclass
class Student:
    model: Any
    tokenizer: Any
    # The chat template or the pad token added tokens (their embeddings start random): every
    # LoRA stage then trains the embeddings in full. Weights loaded from disk do not say so.
    tokenizer_grew: bool


def load_for_training(student, root: Path) -> Student:
    """The student and its tokenizer, with a chat template and a pad token (embeddings resized)."""
    from orcac.runtime.models import loading as hf_models

    model, tokenizer = hf_models.load_causal_lm(student.model, root)
    added = chat_format.prepare_tokenizer(tokenizer, student.chat_template)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    return Student(model, tokenizer, tokenizer_grew=bool(added))


def load_student(student, root: Path):
    """(model, tokenizer), loaded as `load_for_training` does: how the distill teacher is loaded too."""
    loaded = load_for_training(student, root)
    return loaded.model, loaded.tokenizer


def load_weights(path: Path):
    """A stage's saved weights, to train the next stage from."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    model.config.use_cache = False
    return model


def fingerprint(model) -> str:
    """A short hash of the weights, to show which weights a stage started from."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(f"{tensor.double().sum().item():.10e}".encode())
    return digest.hexdigest()[:16]


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def isolation_check(model) -> bool:
    """Whether two packed sequences give the same logits as each run alone on this model."""
    import torch

    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.get_text_config().vocab_size
    a = torch.randint(0, vocab, (6,), generator=generator).to(device)
    b = torch.randint(0, vocab, (5,), generator=generator).to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        alone = model(input_ids=b[None], use_cache=False).logits[0].float()
        packed = (
            model(
                input_ids=torch.cat([a, b])[None],
                position_ids=torch.cat([torch.arange(6), torch.arange(5)])[None].to(device),
                use_cache=False,
            )
            .logits[0, 6:]
            .float()
        )
    model.train(was_training)
    return bool(torch.allclose(alone, packed, atol=1e-3, rtol=1e-3))
