"""The decoding engine (orcac.runtime.models.engine): shared-prefix attention, a preallocated cache
and a stream that refills the batch give the answers of the model's own forward."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from orcac.runtime.models import engine
from orcac.runtime.models.generation import decode

PREFIX = list(range(5, 45))  # 40 shared tokens: the system message and demonstrations
PROMPTS = [PREFIX + [50 + i] * (1 + i % 4) + [90 + i] for i in range(7)]


@pytest.fixture(scope="module")
def model(tiny):
    return AutoModelForCausalLM.from_pretrained(tiny).eval()


def test_merging_two_softmax_parts_is_attention_over_all_keys():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)
    whole = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3)
    first = engine.attention(q, k[:, :, :6], v[:, :, :6], scale=0.3)
    second = engine.attention(q, k[:, :, 6:], v[:, :, 6:], scale=0.3)
    assert torch.allclose(engine.merge(*first, *second), whole, atol=1e-5)


@pytest.mark.parametrize("one_softmax_queries", [engine.ONE_SOFTMAX_QUERIES, 0])
def test_the_engine_runs_for_llama_and_gives_the_transformers_loops_tokens(model, monkeypatch, one_softmax_queries):
    """Both ways a decode step attends: the prefix's and the suffix's scores in one softmax (few
    rows), or the flash kernel over the prefix merged with the suffix (many)."""
    monkeypatch.setattr(engine, "ONE_SOFTMAX_QUERIES", one_softmax_queries)
    assert engine.supports(model)
    ours = decode(model, PROMPTS, max_new_tokens=12, eos=set(), pad=0)
    theirs = decode(model, PROMPTS, max_new_tokens=12, eos=set(), pad=0, engine="transformers")
    assert ours == theirs


@pytest.mark.parametrize("one_softmax_queries", [engine.ONE_SOFTMAX_QUERIES, 0])
def test_every_steps_logits_are_the_models_own_forward_over_the_sequence_so_far(
    model, monkeypatch, one_softmax_queries
):
    """Decode rows, a tail riding in their step, both ways of attending: each row's logits are
    what the model's own forward gives for its prompt and the tokens chosen so far."""
    monkeypatch.setattr(engine, "ONE_SOFTMAX_QUERIES", one_softmax_queries)
    _every_step_is_the_models_own_forward(model, PROMPTS[:4], [4] * 4, batch_size=3)


def _every_step_is_the_models_own_forward(model, prompts: list, budgets: list[int], batch_size: int) -> None:
    """A greedy stream of `prompts`: at every step each row's logits are the model's own forward
    over its prompt and the tokens chosen so far, and every answer runs to its budget."""
    steps: list = []

    def pick(logits, requests):
        steps.append((list(requests), logits.clone()))
        return logits.argmax(dim=-1)

    engine.stream(model, prompts, budgets, eos=set(), pad=0, shared=len(PREFIX), batch_size=batch_size, pick=pick)
    so_far = [list(prompt) for prompt in prompts]
    for requests, logits in steps:
        for row, request in enumerate(requests):
            with torch.inference_mode():
                theirs = model(input_ids=torch.tensor([so_far[request]])).logits[0, -1]
            assert torch.allclose(logits[row], theirs, atol=1e-4), (request, len(so_far[request]))
            so_far[request].append(int(logits[row].argmax()))
    assert [len(s) - len(p) for s, p in zip(so_far, prompts)] == budgets


def test_a_stream_through_a_small_batch_gives_each_prompt_its_own_answer(model):
    [free] = decode(model, [PROMPTS[0]], max_new_tokens=10, eos=set(), pad=0)
    stop = free.tokens[2]
    budgets = [10, 3, 10, 1, 7, 10, 4]
    streamed = decode(model, PROMPTS, max_new_tokens=budgets, eos={stop}, pad=0, batch_size=2)
    static = decode(model, PROMPTS, max_new_tokens=budgets, eos={stop}, pad=0, engine="transformers")
    assert streamed == static
    assert streamed[0].finish_reason == "stop" and streamed[3].tokens and len(streamed[3].tokens) <= 1


def test_a_sampled_answer_does_not_depend_on_neighbours_or_arrival_order(model):
    seeds = list(range(100, 107))
    kwargs = {"max_new_tokens": 9, "eos": set(), "pad": 0, "temperature": 1.0, "top_p": 0.9}
    wide = decode(model, PROMPTS, seeds=seeds, **kwargs)
    narrow = decode(model, PROMPTS[::-1], seeds=seeds[::-1], batch_size=3, **kwargs)[::-1]
    assert wide == narrow


def test_groups_with_different_prefixes_and_prompts_without_one_decode_side_by_side(model):
    other = [list(range(200, 230)) + [7], list(range(200, 230)) + [8, 9]]
    mixed = [PROMPTS[0], other[0], [3, 4, 5], PROMPTS[1], other[1]]
    together = decode(model, mixed, max_new_tokens=6, eos=set(), pad=0, batch_size=2)
    alone = [decode(model, [p], max_new_tokens=6, eos=set(), pad=0, engine="transformers")[0] for p in mixed]
    assert together == alone


def test_the_suffix_cache_grows_past_its_first_capacity(model, monkeypatch):
    monkeypatch.setattr(engine, "FIRST_CAPACITY", 4)
    ours = decode(model, PROMPTS[:3], max_new_tokens=20, eos=set(), pad=0)
    theirs = decode(model, PROMPTS[:3], max_new_tokens=20, eos=set(), pad=0, engine="transformers")
    assert ours == theirs


def test_the_engine_runs_under_bf16_autocast_as_eval_runs_the_student(model):
    """eval runs the student as train does, fp32 weights under bf16 autocast (models/precision.py):
    the engine attends in autocast's dtype (rotary's fp32 cos/sin once promoted q and k past v's,
    and the fused kernel refused the mix) and matches the transformers loop under the same autocast
    where neither sits on a near tie."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = decode(model, PROMPTS, max_new_tokens=8, eos=set(), pad=0)
        theirs = decode(model, PROMPTS, max_new_tokens=8, eos=set(), pad=0, engine="transformers")
    assert all(len(answer.tokens) == 8 for answer in ours)
    assert sum(a == b for a, b in zip(ours, theirs)) >= len(PROMPTS) // 2


def test_admitted_tails_are_packed_without_padding(model):
    """An admission runs the model's products over the new tails' own tokens only: padding every
    tail to the longest was a quarter of the demo's prefill tokens."""
    seen: list[int] = []
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    try:
        decode(model, PROMPTS, max_new_tokens=1, eos=set(), pad=0)
    finally:
        hook.remove()
    tails = [len(p) - len(PREFIX) for p in PROMPTS]
    assert seen == [len(PREFIX), sum(tails)]  # the prefix once, then every tail, unpadded


def test_an_admitted_tail_rides_in_the_busy_rows_step(model):
    """A slot freed at one step takes the next waiting prompt at the next, its tail in the same
    forward as the busy rows' tokens (chunked prefill): no forward of its own, no slot idle."""
    seen: list[int] = []
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    prompts = PROMPTS[:3]
    try:
        decode(model, prompts, max_new_tokens=[1, 3, 2], eos=set(), pad=0, batch_size=2)
    finally:
        hook.remove()
    first, second, third = (len(p) - len(PREFIX) for p in prompts)
    # The prefix; the first two tails; the second's token with the third's tail; both tokens.
    assert seen == [len(PREFIX), first + second, 1 + third, 2]


def test_a_step_admits_tails_up_to_its_token_budget(model, monkeypatch):
    """PREFILL_TOKENS bounds the tail tokens one step admits (a tail longer than it alone), and
    the answers are the same as admitting them all at once."""
    monkeypatch.setattr(engine, "PREFILL_TOKENS", 4)
    seen: list[int] = []
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    try:
        ours = decode(model, PROMPTS, max_new_tokens=6, eos=set(), pad=0)
    finally:
        hook.remove()
    theirs = decode(model, PROMPTS, max_new_tokens=6, eos=set(), pad=0, engine="transformers")
    assert ours == theirs
    tails = [len(p) - len(PREFIX) for p in PROMPTS]  # 2, 3, 4, 5, 2, 3, 4
    # The first tail alone (2 + 3 > 4), then one decode token with the second tail's 3, ...
    assert seen[1:3] == [tails[0], 1 + tails[1]]
    assert sum(seen[1:]) == sum(tails) + sum(6 - 1 for _ in PROMPTS)  # every token once


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_packed_linear_layers_give_the_models_own_logits(model, dtype):
    """The engine's linear layers run from weights packed once for oneDNN (q/k/v and gate/up as
    one product each): its forward gives the model's logits, in fp32 and in native bf16."""
    if not engine._Packed.runs(torch.device("cpu"), dtype):
        pytest.skip(f"oneDNN does not multiply {dtype} natively on this CPU")
    model = model.to(dtype)
    try:
        net = engine._Llama(model)
        assert net.packed is not None

        def attend(layer, q, k, v):
            k, v = engine._expand(k, net.group), engine._expand(v, net.group)
            return engine.attention(q, k, v, scale=net.scale, causal=True)[0]

        ids = torch.tensor([prompt[-30:] for prompt in PROMPTS[:2]])
        with torch.inference_mode():
            ours = net.logits(net.forward(ids, torch.arange(30)[None].expand(2, 30), attend)).float()
            theirs = model(input_ids=ids).logits.float()
    finally:
        model.to(torch.float32)
    tolerance = 1e-5 if dtype == torch.float32 else 0.05 * theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() <= tolerance
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


def test_the_packed_weights_are_kept_for_the_next_stream_until_a_weight_changes(tiny):
    """A build decodes batch after batch: the weights are packed once, and again when one is
    changed in place or the model is converted (then the answers are the changed model's)."""
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    if not engine._Packed.runs(torch.device("cpu"), torch.float32):
        pytest.skip("oneDNN does not multiply fp32 on this CPU")
    first = engine._Llama(model).packed
    assert engine._Llama(model).packed is first

    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    changed = engine._Llama(model).packed
    assert changed is not first
    ours = decode(model, PROMPTS, max_new_tokens=8, eos=set(), pad=0)
    assert ours == decode(model, PROMPTS, max_new_tokens=8, eos=set(), pad=0, engine="transformers")

    model.to(torch.bfloat16).to(torch.float32)  # new weights, maybe at the old ones' addresses
    assert engine._Llama(model).packed is not changed
    ours = decode(model, PROMPTS, max_new_tokens=8, eos=set(), pad=0)
    assert ours == decode(model, PROMPTS, max_new_tokens=8, eos=set(), pad=0, engine="transformers")


def test_the_stream_profiler_times_the_streams_own_steps_and_sorts_them_by_kind(model):
    """benchmarks/profile_stream.py drives a Stream step by step: the same answers as
    engine.stream, every tail token counted once (a repeat's last one), the first step, then
    admissions and full steps, then the drain."""
    from benchmarks.profile_stream import run_stream

    prompts = PROMPTS * 2  # 14 requests through 4 slots, each prompt twice
    steps, new_tokens, wall = run_stream(engine, model, prompts, 4, 6, set(), 0)
    answers = engine.stream(model, prompts, [6] * len(prompts), eos=set(), pad=0, shared=len(PREFIX), batch_size=4)
    assert new_tokens == sum(len(tokens) for tokens, _ in answers) == 6 * len(prompts)
    assert sum(tokens for _, _, tokens, _ in steps) == sum(len(p) - len(PREFIX) for p in PROMPTS) + len(PROMPTS)
    kinds = [kind for kind, *_ in steps]
    assert kinds[0] == "first" and kinds.count("first") == 1
    assert {"admission", "full", "draining"} <= set(kinds)
    assert kinds.index("draining") > max(i for i, kind in enumerate(kinds) if kind in ("admission", "full"))
    assert 0 < sum(seconds for *_, seconds in steps) <= wall


def _forwarded(model, run) -> tuple[object, list[int]]:
    """run()'s result and the tokens of each forward through the model."""
    seen: list[int] = []
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    try:
        return run(), seen
    finally:
        hook.remove()


def test_a_prompt_asked_again_starts_from_the_tail_its_first_asking_prefilled(model):
    """A row's samples are one prompt asked several times, each with its own seed: its tail goes
    through the model once, every repeat starts from a copy of it (decoding only the tail's last
    token), and each answer is the one its prompt and seed give alone."""
    prompts = [PROMPTS[1], PROMPTS[3], PROMPTS[1], PROMPTS[5], PROMPTS[3], PROMPTS[1]]
    seeds = [11, 12, 13, 14, 15, 16]
    kwargs = {"max_new_tokens": 7, "eos": set(), "pad": 0, "temperature": 1.0}
    answers, seen = _forwarded(model, lambda: decode(model, prompts, seeds=seeds, batch_size=4, **kwargs))
    alone = [decode(model, [p], seeds=[s], **kwargs)[0] for p, s in zip(prompts, seeds)]
    assert answers == alone
    assert len({tuple(a.tokens) for a in answers}) == len(prompts)  # sampled apart, not copied answers
    distinct = {tuple(p) for p in prompts}
    tails = sum(len(p) - len(PREFIX) for p in distinct)
    repeats = len(prompts) - len(distinct)
    assert sum(seen) == len(PREFIX) + tails + repeats + len(prompts) * (7 - 1)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_repeats_copied_into_other_slots_or_their_holders_give_the_models_own_logits(model, batch_size):
    """Every way a repeat starts: in its holder's slot once that is free, copied into another slot
    while the holder is still decoding or has been taken by a new tail in the same step, behind a
    first asking prefilled in the step before. At every step each row's logits are the model's
    own forward over its prompt and tokens so far."""
    prompts = [PROMPTS[i] for i in (0, 2, 0, 0, 4, 2, 6, 0)]
    _every_step_is_the_models_own_forward(model, prompts, [3, 9, 5, 1, 6, 2, 8, 4], batch_size)


def test_a_stream_fed_as_it_runs_starts_a_repeat_from_a_slot_whose_answer_finished(model):
    """The local teacher adds requests to a running Stream: a prompt asked again after its first
    answer finished starts from the tail its freed slot still holds (no tail prefilled again)."""
    stream = engine.Stream(model, PREFIX, width=2, eos=set(), pad=0)
    stream.add("first", PROMPTS[2], 2)
    results = {}
    while not stream.idle:
        results.update({request: tokens for request, tokens, _ in stream.step()})
    before = stream.tail_tokens
    stream.add("again", PROMPTS[2], 2)
    _, seen = _forwarded(model, lambda: [results.update({r: t for r, t, _ in stream.step()}) for _ in range(2)])
    assert stream.tail_tokens - before == 1 and seen == [1, 1]
    assert results["again"] == results["first"]
