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
