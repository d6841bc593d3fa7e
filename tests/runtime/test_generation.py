"""The one decoding loop (orcac.runtime.models.generation): what it returns does not depend on the batch."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from orcac.runtime.models.generation import decode, shared_prefix


@pytest.fixture(scope="module")
def model(tiny):
    return AutoModelForCausalLM.from_pretrained(tiny).eval()


PREFIX = list(range(5, 45))  # 40 tokens every prompt starts with (a system message and demonstrations)
PROMPTS = [PREFIX + [50, 51], PREFIX + [60, 61, 62, 63, 64, 65], PREFIX + [70], [7, 8, 9]]


def test_a_shared_prefix_is_found_and_prefilled_once_with_the_same_answers(model):
    assert shared_prefix(PROMPTS[:3]) == 40 and shared_prefix(PROMPTS) == 0
    together = decode(model, PROMPTS[:3], max_new_tokens=8, eos=set(), pad=0)
    alone = [decode(model, [p], max_new_tokens=8, eos=set(), pad=0)[0] for p in PROMPTS[:3]]
    assert together == alone


def test_rows_leave_the_batch_at_their_own_budget_or_end_of_sequence(model):
    [free] = decode(model, [PROMPTS[0]], max_new_tokens=10, eos=set(), pad=0)
    stop = free.tokens[3]
    results = decode(model, PROMPTS, max_new_tokens=[10, 2, 10, 5], eos={stop}, pad=0)
    alone = [decode(model, [p], max_new_tokens=n, eos={stop}, pad=0)[0] for p, n in zip(PROMPTS, [10, 2, 10, 5])]
    assert results == alone
    assert results[0].finish_reason == "stop" and results[0].tokens == free.tokens[: free.tokens.index(stop)]
    assert results[1].finish_reason in ("length", "stop") and len(results[1].tokens) <= 2


def test_sampling_is_seeded_per_row(model):
    a = decode(model, PROMPTS[:3], max_new_tokens=8, eos=set(), pad=0, temperature=1.0, seeds=[1, 2, 3])
    b = decode(model, PROMPTS[2::-1], max_new_tokens=8, eos=set(), pad=0, temperature=1.0, seeds=[3, 2, 1])
    assert a == b[::-1]  # the same seed, the same answer, wherever the row is in the batch
    c = decode(model, PROMPTS[:1], max_new_tokens=8, eos=set(), pad=0, temperature=1.0, top_p=0.5, seeds=[1])
    assert len(c[0].tokens) == 8


def _draws(logits, temperature, top_p, n: int, seed: int = 0) -> list[int]:
    import torch

    from orcac.runtime.models.generation import _sample

    generator = torch.Generator().manual_seed(seed)
    rows = torch.tensor([logits] * 100)
    return [int(t) for _ in range(n // 100) for t in _sample(rows, temperature, top_p, [generator] * 100)]


def test_a_sampled_token_follows_the_tempered_softmax():
    """Each token as often as softmax(logits / T) says (within four standard errors over 20,000
    draws), and a token of probability 0 never."""
    import math

    import torch

    logits = [0.0, 1.0, 2.0, -1.0, float("-inf")]
    draws = _draws(logits, 0.8, None, 20_000)
    expected = torch.softmax(torch.tensor(logits) / 0.8, dim=-1).tolist()
    for token, p in enumerate(expected):
        seen = draws.count(token) / len(draws)
        assert abs(seen - p) <= 4 * math.sqrt(p * (1 - p) / len(draws)) + 1e-9, (token, seen, p)


def test_the_nucleus_is_the_smallest_set_reaching_top_p_searched_among_the_likeliest_or_all(monkeypatch):
    """top_p keeps the likeliest tokens until their mass reaches it, renormalised; when the
    likeliest NUCLEUS_CANDIDATES fall short the whole vocabulary is sorted, with the same draws."""
    from orcac.runtime.models import generation

    logits = [0.0, 1.5, 3.0, -1.0, 0.5]  # probabilities 0.036, 0.162, 0.728, 0.013, 0.060
    draws = _draws(logits, 1.0, 0.8, 10_000)
    assert set(draws) == {1, 2}  # 0.728 < 0.8, then 0.728 + 0.162 reaches it
    assert abs(draws.count(2) / len(draws) - 0.728 / 0.890) < 0.02
    monkeypatch.setattr(generation, "NUCLEUS_CANDIDATES", 2)
    among_two = _draws(logits, 1.0, 0.8, 2_000, seed=5)  # 0.890 > 0.8: found among the likeliest two
    wide = _draws(logits, 1.0, 0.9, 2_000, seed=5)  # 0.890 <= 0.9: every token sorted
    assert set(wide) == {1, 2, 4}
    monkeypatch.setattr(generation, "NUCLEUS_CANDIDATES", 256)
    assert _draws(logits, 1.0, 0.8, 2_000, seed=5) == among_two
    assert _draws(logits, 1.0, 0.9, 2_000, seed=5) == wide
