"""One decoding loop for every in-process model: the local teacher and `orcac eval`.

    results = decode(model, prompts, max_new_tokens=[128, 64], eos={2}, pad=2)

Why our own loop rather than `model.generate`:
- Each row may carry its own seed (a sample's job seed, orcac.runtime.answers.items.sample_options),
  drawn from its own `torch.Generator`, so a sampled answer depends on its job alone and not on
  which other requests happened to share its batch. `generate` draws the whole batch from one
  global generator.
- Rows that are finished (end of sequence, or their own `max_new_tokens`) leave the batch: their
  key/value cache rows are dropped (once a quarter of the batch is done, as each drop copies the
  cache), so the rest decode at the cost of the rows still running.
  `generate` keeps computing finished rows until the longest one ends; with teacher answers of
  very different lengths that is most of the work (BENCHMARKS.md, "local teacher").
- The prompts of a batch mostly share a prefix (the system message and the demonstrations,
  with a 135M teacher several hundred tokens): it is computed once and its key/value cache
  copied to every row, so only each prompt's own tail is prefilled ("prefix caching", as vLLM
  does it across requests; here within a batch).
- One place decides what an end of sequence is and how it is counted, for build and eval alike.

Prefill: the shared prefix once, then every row's tail, left-padded between the prefix and the
tail (masked, with position ids that skip the padding). Then one token per step with the
model's DynamicCache. Greedy when temperature is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


def stop_ids(model, tokenizer) -> set[int]:
    """The tokens that end an answer, for the local teacher and eval alike: the model's
    generation config's end-of-sequence ids and the tokenizer's (which closes a chat turn)."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@dataclass(frozen=True)
class Generated:
    tokens: list[int]  # the new tokens, without the end-of-sequence token
    finish_reason: str  # "stop" (an end-of-sequence token) or "length" (the budget ran out)

    @property
    def completion_tokens(self) -> int:
        """Tokens the model produced, the end-of-sequence token included (as providers count)."""
        return len(self.tokens) + (1 if self.finish_reason == "stop" else 0)


def decode(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: Sequence[int] | int,
    eos: set[int],
    pad: int,
    temperature: float = 0.0,
    top_p: float | None = None,
    seeds: Sequence[int | None] | None = None,
    batch_size: int | None = None,
    engine: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> list[Generated]:
    """New tokens for every prompt (token ids).

    engine "auto": orcac.runtime.models.engine where it supports the model (shared-prefix
    attention, a preallocated cache, and at most `batch_size` rows at once, refilled from the
    waiting prompts as rows finish), else "transformers": the model's own forward with a
    DynamicCache, in static batches of `batch_size` that shrink as rows finish.
    `progress(done)` is called with the number of prompts answered so far as answers finish.
    """
    n = len(prompts)
    if n == 0:
        return []
    budgets = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
    from orcac.runtime.models import engine as stream_engine

    if engine == "auto" and stream_engine.supports(model):
        return _decode_stream(model, prompts, budgets, eos, pad, temperature, top_p, seeds, batch_size, progress)
    width = batch_size or n
    results: list[Generated] = []
    for start in range(0, n, width):
        chunk = slice(start, start + width)
        results += _decode_static(
            model, prompts[chunk], budgets[chunk], eos, pad, temperature, top_p, None if seeds is None else seeds[chunk]
        )
        if progress is not None:
            progress(len(results))
    return results


def _decode_stream(
    model, prompts, budgets, eos, pad, temperature, top_p, seeds, batch_size, progress=None
) -> list[Generated]:
    """The engine's stream, one group of prompts sharing a prefix at a time."""
    from orcac.runtime.models import engine as stream_engine

    pick = None
    if temperature is not None and temperature > 0:
        generators = _generators(next(model.parameters()).device, len(prompts), seeds)

        def pick(logits, requests):
            return _sample(logits, temperature, top_p, [generators[r] for r in requests])

    results: list[Generated | None] = [None] * len(prompts)
    answered = 0

    def finished(count: int) -> None:
        if progress is not None:
            progress(answered + count)

    for group in prefix_groups(prompts):
        members = [prompts[i] for i in group]
        shared = shared_prefix(members) if len(members) > 1 else 0

        def pick_in_group(logits, requests, group=group):
            return pick(logits, [group[r] for r in requests])

        decoded = stream_engine.stream(
            model,
            members,
            [budgets[i] for i in group],
            eos=eos,
            pad=pad,
            shared=shared,
            batch_size=batch_size,
            pick=pick_in_group if pick is not None else None,
            finished=finished,
        )
        for i, (tokens, reason) in zip(group, decoded):
            results[i] = Generated(tokens, reason)
        answered += len(group)
    return results


def prefix_groups(prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """The prompts' indices grouped by their first MIN_SHARED tokens (so a group's shared prefix,
    the system message and demonstrations, is at least that long), in order of first appearance.

    >>> prefix_groups([[1] * 20 + [2], [3] * 20, [1] * 20 + [4], [5]])
    [[0, 2], [1], [3]]
    """
    groups: dict = {}
    for i, prompt in enumerate(prompts):
        key = tuple(prompt[:MIN_SHARED]) if len(prompt) > MIN_SHARED else ("alone", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _generators(device, n: int, seeds) -> list:
    """One generator per row, seeded from its request (else from fresh entropy)."""
    import torch

    generators = []
    for row in range(n):
        g = torch.Generator(device=device)
        seed = seeds[row] if seeds is not None else None
        g.manual_seed(seed if seed is not None else torch.seed())
        generators.append(g)
    return generators


def _decode_static(model, prompts, budgets, eos, pad, temperature, top_p, seeds) -> list[Generated]:
    """One static batch through the model's own forward and a DynamicCache, shrinking as rows finish."""
    import torch
    from transformers import DynamicCache

    n = len(prompts)
    device = next(model.parameters()).device
    shared = shared_prefix(prompts) if n > 1 else 0
    tails = [list(p)[shared:] for p in prompts]
    width = max(len(t) for t in tails)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for row, tail in enumerate(tails):
        ids[row, width - len(tail) :] = torch.tensor(tail, dtype=torch.long)
        mask[row, shared + width - len(tail) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    sampled = temperature is not None and temperature > 0
    generators = _generators(device, n, seeds) if sampled else None
    eos_ids = torch.tensor(sorted(eos), device=device) if eos else None

    out: list[list[int]] = [[] for _ in range(n)]
    finish: list[str | None] = [None] * n
    alive = list(range(n))  # original row of each batch row
    cache = DynamicCache()
    extra = _forward_arguments(model, cache)
    step_ids, step_positions = ids, positions
    with torch.inference_mode():
        if shared:
            prefix = torch.tensor([list(prompts[0])[:shared]], dtype=torch.long, device=device)
            model(input_ids=prefix, use_cache=True, **extra)
            cache.batch_repeat_interleave(n)
        while alive:
            logits = (
                model(input_ids=step_ids, attention_mask=mask, position_ids=step_positions, use_cache=True, **extra)
                .logits[:, -1, :]
                .float()
            )
            if sampled:
                next_tokens = _sample(logits, temperature, top_p, [generators[r] for r in alive])
            else:
                next_tokens = logits.argmax(dim=-1)
            is_eos = (
                torch.isin(next_tokens, eos_ids)
                if eos_ids is not None
                else torch.zeros_like(next_tokens, dtype=torch.bool)
            )
            keep: list[int] = []
            for b, (row, token, ended) in enumerate(zip(alive, next_tokens.tolist(), is_eos.tolist())):
                if finish[row] is not None:  # finished at an earlier step, not yet dropped
                    continue
                if ended:
                    finish[row] = "stop"
                    continue
                out[row].append(token)
                if len(out[row]) >= budgets[row]:
                    finish[row] = "length"
                    continue
                keep.append(b)
            if not keep:
                break
            # Dropping rows copies the whole cache: worth it once a quarter of the batch is done.
            if len(alive) - len(keep) >= max(1, len(alive) // 4):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask = mask.index_select(0, index)
                next_tokens = next_tokens.index_select(0, index)
                step_positions = step_positions.index_select(0, index)
                alive = [alive[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            step_ids = next_tokens[:, None]
            step_positions = step_positions[:, -1:] + 1
    return [Generated(tokens, reason or "length") for tokens, reason in zip(out, finish)]


MIN_SHARED = 16  # a shorter common prefix is not worth a forward pass of its own


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own.

    >>> shared_prefix([[1, 2, 3] * 8 + [4], [1, 2, 3] * 8 + [5, 6]])
    24
    >>> shared_prefix([[1, 2], [1, 3]])  # too short to pay off
    0
    """
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        i = 0
        while i < n and p[i] == first[i]:
            i += 1
        n = i
    return n if n >= MIN_SHARED else 0


def _forward_arguments(model, cache) -> dict:
    """The cache, under the name this transformers gives it (5.2x: `cache`; `past_key_values` is
    deprecated there), and `logits_to_keep=1` where the model takes it: only the last position's
    logits are used, and a prefill of 64 rows x 100 tokens would otherwise project every position
    onto the whole vocabulary (49,152 x 576 for SmolLM2: most of a prefill's work, and 1.2 GB of
    fp32 logits)."""
    import inspect

    parameters = inspect.signature(model.forward).parameters
    arguments = {"cache" if "cache" in parameters else "past_key_values": cache}
    if "logits_to_keep" in parameters:
        arguments["logits_to_keep"] = 1
    return arguments


def _sample(logits, temperature: float, top_p: float | None, generators) -> torch.Tensor:  # noqa: F821
    """One token per row from softmax(logits / T), nucleus-filtered, each row from its generator.

    Inverse-CDF sampling: one uniform draw per row from its generator, found in the row's
    cumulative probabilities. `torch.multinomial` draws an exponential for every vocabulary
    entry instead (its one-sample path): 1.2 ms a row for SmolLM2's 49,152, 77 ms of a 64-row
    step that takes 220 ms to decode (fp32, two AVX2 cores; inverse-CDF 5 ms).
    """
    import torch

    probs = torch.softmax(logits / temperature, dim=-1)
    ids = None  # the vocabulary ids of `probs`' columns where they are not 0..V-1
    if top_p is not None and top_p < 1.0:
        probs, ids = _nucleus(probs, top_p)
    cumulative = probs.cumsum(dim=-1)
    total = cumulative[:, -1:]
    draws = torch.stack([torch.rand((), generator=g, device=g.device) for g in generators])[:, None]
    # u * total < total, kept so where float rounding would reach it: a column past the end
    wanted = torch.minimum(draws * total, torch.nextafter(total, torch.zeros_like(total)))
    picked = torch.searchsorted(cumulative, wanted, right=True)  # the first column whose sum passes it
    return (picked if ids is None else ids.gather(-1, picked))[:, 0]


NUCLEUS_CANDIDATES = 256  # the likeliest tokens searched first for the nucleus (all, where they fall short)


def _nucleus(probs, top_p: float) -> tuple:
    """(probabilities, their vocabulary ids), most likely first, zero past the smallest set that
    reaches `top_p`. Sorting SmolLM2's vocabulary for 64 rows took 128 ms; the likeliest
    NUCLEUS_CANDIDATES (6 ms) hold the nucleus unless a row's mass is spread wider."""

    top, ids = probs.topk(min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
    # strictly more than top_p: then the first token left out is past the nucleus
    if not bool((top.sum(dim=-1) > top_p).all()):
        top, ids = probs.sort(dim=-1, descending=True)
    cumulative = top.cumsum(dim=-1)
    top = top.masked_fill((cumulative - top) > top_p, 0.0)  # keep the smallest set reaching top_p
    return top, ids
