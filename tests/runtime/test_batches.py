"""Packed training batches: one pack a row, examples isolated, the same loss as unpacked."""

from __future__ import annotations

import pytest
import torch

from orcac.runtime.training.batches import pack_rows_collator, real_tokens, uses_varlen_attention
from orcac.runtime.training.loss import IGNORE, answer_loss


def _pack(*lengths, start=5):
    ids, labels = [], []
    for n in lengths:
        seq = list(range(start, start + n))
        ids += seq
        labels += [IGNORE] * (n - 2) + seq[-2:]  # the last two tokens are the answer
        start += n
    return {"input_ids": ids, "labels": labels, "seq_lengths": list(lengths)}


def test_each_pack_is_a_row_with_its_own_positions_and_no_mask():
    batch = pack_rows_collator(pad_token_id=0)([_pack(3, 4), _pack(5)])
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape == (2, 7)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3], [0, 1, 2, 3, 4, 0, 0]]
    assert batch["labels"][1, 5:].tolist() == [IGNORE, IGNORE]  # padding is never a target
    assert real_tokens(batch["position_ids"]) == 3 + 4 + 5


def test_rows_of_packs_give_the_loss_of_every_example_alone(tiny):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    model.config.use_cache = False
    assert not uses_varlen_attention(model)
    packs = [_pack(6, 9), _pack(11)]
    batch = pack_rows_collator(pad_token_id=0)(packs)
    with torch.no_grad():
        packed = answer_loss(model, batch)
    # the same four examples, one row each, summed over their answer tokens
    total, count = 0.0, 0
    for pack in packs:
        at = 0
        for n in pack["seq_lengths"]:
            ids = torch.tensor([pack["input_ids"][at : at + n]])
            labels = torch.tensor([pack["labels"][at : at + n]])
            k = int((labels[:, 1:] != IGNORE).sum())
            with torch.no_grad():
                total += float(answer_loss(model, {"input_ids": ids, "labels": labels})) * k
            count += k
            at += n
    assert float(packed) == pytest.approx(total / count, rel=1e-5)
