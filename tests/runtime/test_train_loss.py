"""The training loss with the vocabulary head on labelled positions only equals the model's own."""

from __future__ import annotations

import pytest
import torch

from orcac.runtime.training.loss import IGNORE, answer_loss


@pytest.fixture
def model(tiny):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    # as `orcac train` loads it: with a cache, transformers does not isolate packed examples
    m.config.use_cache = False
    m.train()
    return m


def _batch(packed: bool):
    """Two examples with a prompt (unlabelled) and a short answer, packed in one row or padded."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(5, 900, (30,), generator=g), torch.randint(5, 900, (22,), generator=g)
    labels_a, labels_b = a.clone(), b.clone()
    labels_a[:24], labels_b[:15] = IGNORE, IGNORE  # answers: the last 6 and 7 tokens
    if packed:  # padding-free, as TRL's bfd collator lays a batch out
        return {
            "input_ids": torch.cat([a, b])[None],
            "labels": torch.cat([labels_a, labels_b])[None],
            "position_ids": torch.cat([torch.arange(30), torch.arange(22)])[None],
        }
    ids = torch.zeros((2, 30), dtype=torch.long)
    labels = torch.full((2, 30), IGNORE)
    mask = torch.zeros((2, 30), dtype=torch.long)
    ids[0], labels[0], mask[0] = a, labels_a, 1
    ids[1, :22], labels[1, :22], mask[1, :22] = b, labels_b, 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("items", [None, 40], ids=["mean", "num_items_in_batch"])
def test_the_answer_loss_and_its_gradients_equal_the_models_own(model, packed, items):
    batch = _batch(packed)
    own = model(**batch, num_items_in_batch=items).loss
    own.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    ours = answer_loss(model, batch, items)
    ours.backward()
    assert ours.item() == pytest.approx(own.item(), rel=1e-5)
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def _head_rows(model):
    """The positions the vocabulary head projects, call by call."""
    seen = []
    model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[:-1].numel()) if args[0].numel() else None
    )
    return seen


def test_only_the_labelled_positions_reach_the_head(model):
    seen = _head_rows(model)
    answer_loss(model, _batch(packed=True))
    assert seen == [6 + 7]  # of 52 positions: each answer's tokens, predicted from the one before


def _long_answers(rows=3, length=40):
    """Rows labelled almost everywhere, as Orca 2's long explanations packed to max_length are."""
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 900, (rows, length), generator=g)
    labels = ids.clone()
    labels[:, :4] = IGNORE
    labels[1, -9:] = IGNORE  # a shorter row
    return {"input_ids": ids, "labels": labels}


@pytest.mark.parametrize("items", [None, 200], ids=["mean", "num_items_in_batch"])
def test_the_head_runs_a_chunk_at_a_time_and_gives_the_same_loss_and_gradients(model, monkeypatch, items):
    """The head's output is bounded by loss.CHUNK positions (recomputed in backward), whatever
    the batch, and the loss and gradients are the model's own."""
    from orcac.runtime.training import loss

    batch = _long_answers()
    own = model(**batch, num_items_in_batch=items).loss
    own.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)

    monkeypatch.setattr(loss, "CHUNK", 16)
    seen = _head_rows(model)
    ours = answer_loss(model, batch, items)
    ours.backward()
    labelled = 3 * 36 - 9  # positions 4.. of each 40-token row, less the short row's last 9
    assert max(seen) <= 16 and sum(seen) == 2 * labelled  # each chunk once forward, once in backward
    assert ours.item() == pytest.approx(own.item(), rel=1e-5)
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_chunked_head_under_bf16_autocast_matches_the_whole_head(model):
    from orcac.runtime.training import loss

    torch.manual_seed(0)
    hidden = torch.randn(50, model.config.hidden_size, requires_grad=True)
    targets = torch.randint(0, model.config.vocab_size, (50,))
    head = model.get_output_embeddings()
    results = []
    for chunk in (50, 7):
        hidden.grad, head.weight.grad = None, None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            total = loss.chunked_cross_entropy(head, hidden, targets, chunk=chunk)
        total.backward()
        results.append((total.detach(), hidden.grad.clone(), head.weight.grad.clone()))
    (whole, *whole_grads), (chunked, *chunked_grads) = results
    torch.testing.assert_close(chunked, whole, rtol=1e-3, atol=1e-3)
    for a, b in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-4)
