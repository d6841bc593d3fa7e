"""The decoding engine for Llama-shaped models: shared-prefix attention, a preallocated cache,
and a stream of requests that refills the batch (continuous batching).

    if engine.supports(model):
        results = engine.stream(model, prompts, budgets, eos=..., pad=..., batch_size=64)

generation.decode calls this for the models it supports and keeps its own loop (transformers'
forward with a DynamicCache) for every other architecture. Why each part:

- Shared-prefix attention (cascade attention, as in FlashInfer / flash-decoding). The prompts of
  a teacher batch share a long prefix (system message and demonstrations: 227 of ~260 tokens
  for the demo). Its keys and values are computed once and kept once; at every step the whole
  batch's queries attend to that one copy in a single matrix product (one read of the prefix
  for all rows, instead of one per row) and each row to its own suffix cache. A decode step of a
  few rows puts both parts' scores into one softmax; otherwise the two softmax parts are
  combined exactly through their log-sum-exps (the prefix's through the flash kernel):
      out = (out_p * e^(lse_p - lse) + out_s * e^(lse_s - lse)),  lse = logaddexp(lse_p, lse_s).
- A preallocated suffix cache: each slot's keys and values are written in place at the slot's
  length (no `torch.cat` of the whole cache per step, as DynamicCache does); it grows by
  doubling when an answer outlives it.
- Continuous batching with the prefill inside the step: slots whose rows finished take the next
  waiting requests at the next step, and their tails ride in the same forward as the busy rows'
  decode tokens (one packed sequence for the model's products, as vLLM's chunked prefill does).
  A stream of prompts keeps the batch full instead of decoding each static batch's tail at a
  fraction of its width, and an admission costs no forward of its own: with a separate prefill
  forward, slots were refilled an eighth of the batch at a time and up to that many waited idle.
- A prompt asked again (a row's `samples`, each with its own seed) prefills its tail once: a
  slot's first positions keep the tail's keys and values until the slot takes another request,
  so a repeat starts from them (in that slot once free, else from a copy) and only its tail's
  last token goes through the model. `stream` adds a prompt's repeats right behind it. vLLM's
  automatic prefix caching does this across requests with hashed blocks; here the slots
  themselves are the cache, so nothing is kept beyond what the batch holds anyway.
- Every row samples from its own generator (its request's seed), so an answer depends on its
  request alone, not on its neighbours or on when it was admitted.

The model's own modules give the embeddings, the rotary embeddings' cos/sin (the model's
`rotary_emb`, whatever its rope type) and the MLP's activation; the norms (the model's weights
and epsilon) and the rotation run as fewer operations with the same bits (`_norm`, q and k
rotated together: a decode step is hundreds of small operations, each a few microseconds of
dispatch); so the weights read are the model's, in its dtype (autocast's where it runs).
The linear layers run from a copy of their weights packed once into oneDNN's blocked
layout (`_Packed`: what vLLM's CPU backend does at load), q/k/v as one product and gate/up as
one: the decode step's products took 10-34% less time than through `F.linear` (fp32 on AVX2
kernels, whose `F.linear` is MKL's unpacked sgemm, and native bf16; BENCHMARKS.md). The copy is
kept with the model and made again when a weight changes (`_Packed.of`), so a stream decodes
with the weights the model has when it starts.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import NamedTuple

SUPPORTED = ("LlamaForCausalLM",)  # SmolLM2, Llama 2/3, TinyLlama: what the layer loop below mirrors
FIRST_CAPACITY = 256  # suffix tokens per slot before the cache first grows
# Tail tokens admitted in one step (at least one tail): bounds a step's activations when many long
# prompts wait (vLLM's max_num_batched_tokens); the demo's 64 first tails are ~2,100.
PREFILL_TOKENS = 4096
FEW_QUERIES = 8  # up to this many queries per head, attention in plain products (see `attention`)
# Up to this many decode queries per key/value head (rows x group), a step's prefix and suffix
# scores share one softmax (`_decode_attention`); above, the flash kernel is faster on the prefix.
ONE_SOFTMAX_QUERIES = 64
PACK_WEIGHTS = True  # linear layers from weights packed once for oneDNN (`_Packed`); False: F.linear


def supports(model) -> bool:
    """Whether the engine mirrors this model's forward (else generation.decode keeps its own loop)."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ in SUPPORTED
        and not getattr(model, "training", False)
        and not getattr(config, "sliding_window", None)
        and hasattr(getattr(model, "model", None), "rotary_emb")
    )


class _Llama:
    """The model's parts, and one forward over them with a pluggable attention core."""

    def __init__(self, model):
        import torch

        config = model.config
        self.model = model
        self.body = model.model
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.group = self.heads // self.kv_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.device = next(model.parameters()).device
        # The dtype attention and the caches run in: the weights', or autocast's where the caller
        # runs the model under it (eval runs the student as train does, fp32 weights under bf16
        # autocast: orcac/runtime/models/precision.py). Rotary's fp32 cos/sin would otherwise
        # promote q and k past v's dtype.
        self.dtype = next(model.parameters()).dtype
        if torch.is_autocast_enabled(self.device.type):
            self.dtype = torch.get_autocast_dtype(self.device.type)
        self.packed = _Packed.of(model, self.dtype) if PACK_WEIGHTS and _Packed.runs(self.device, self.dtype) else None

    def forward(self, ids, positions, attend: Callable) -> torch.Tensor:  # noqa: F821
        """Hidden states after the final norm for `ids` [n, T] at `positions` [n, T].

        `attend(layer, q, k, v)` gets the rotated queries [n, H, T, d] and this call's keys and
        values [n, KV, T, d], stores what it keeps, and returns the attention output [n, H, T, d].
        """
        import torch

        x = self.body.embed_tokens(ids)
        cos, sin = self.body.rotary_emb(x, positions)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # for q and k as [n, T, heads, d]
        # apply_rotary_pos_emb's x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1), as
        # x * cos + roll(x) * cat(-sin1, sin2): x2 * -s1 is -x2 * s1 to the bit, and the negation
        # moves from every layer's q and k to sin, once a forward.
        half = self.head_dim // 2
        sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        n, t = ids.shape
        rotated = self.heads + self.kv_heads  # q's heads, then k's: rotated together
        packed = self.packed
        for index, layer in enumerate(self.body.layers):
            attention = layer.self_attn
            h = _norm(layer.input_layernorm, x)
            if packed is not None:
                qkv = packed.qkv[index](h)
            else:
                qkv = torch.cat([attention.q_proj(h), attention.k_proj(h), attention.v_proj(h)], dim=-1)
            qkv = qkv.view(n, t, -1, self.head_dim)
            # apply_rotary_pos_emb's formula (same bits), once for q's and k's heads side by side
            qk = qkv[:, :, :rotated]
            qk = (qk * cos + qk.roll(half, dims=-1) * sin).to(self.dtype)
            q, k = qk[:, :, : self.heads].transpose(1, 2), qk[:, :, self.heads :].transpose(1, 2)
            v = qkv[:, :, rotated:].to(self.dtype).transpose(1, 2)
            out = attend(index, q, k, v).transpose(1, 2).reshape(n, t, -1)
            x = x + (packed.out[index](out) if packed is not None else attention.o_proj(out))
            h = _norm(layer.post_attention_layernorm, x)
            x = x + (packed.mlp(index, layer.mlp, h) if packed is not None else layer.mlp(h))
        return _norm(self.body.norm, x)

    def logits(self, hidden) -> torch.Tensor:  # noqa: F821
        """In the head's dtype: greedy's argmax is the same on bf16 as on its exact fp32 copy, and
        the copy of 64 x 49,152 logits per step is skipped; `pick` gets fp32 (Stream._settle)."""
        return self.packed.head(hidden) if self.packed is not None else self.model.lm_head(hidden)


def _norm(norm, x):
    """LlamaRMSNorm's forward, weight * (x / rms(x) in fp32, back in x's dtype), its five
    operations as torch's fused rms_norm: the same bits (fp32 and bf16, torch 2.13), and the
    decode step runs 61 norms. In fp32 the weight goes inside the fused call, the same bits
    again (in bf16 it does not: its product is rounded once less)."""
    import torch

    shape, epsilon = (x.shape[-1],), norm.variance_epsilon
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return torch.nn.functional.rms_norm(x, shape, norm.weight, epsilon)
    return norm.weight * torch.nn.functional.rms_norm(x.float(), shape, None, epsilon).to(x.dtype)


class _Packed:
    """The model's linear layers with their weights copied once into oneDNN's blocked layout.

    `F.linear` on CPU multiplies by the weight as stored: MKL's sgemm in fp32 and oneDNN's
    matmul in bf16 lay the weight out for the kernel again at every call. Packed once, the decode
    step's products took 10-34% less time at 16-128 rows (SmolLM2-135M, one thread, fp32 on AVX2
    kernels and native bf16: BENCHMARKS.md; MKL's own packed sgemm gained nothing). q/k/v as one
    product and gate/up as one moved that by a few percent either way: kept, as the weights are
    copied anyway. Same products, other kernels: bf16's outputs are the same bits as `F.linear`'s;
    fp32's differ in the last bits (oneDNN sums in another order than MKL).
    """

    @classmethod
    def of(cls, model, dtype) -> _Packed:
        """The model's weights packed, kept with the model for its next stream (a build decodes
        batch after batch; packing SmolLM2-135M takes 0.3 s, 5% of 16 answers) and packed again
        when a weight is not the one packed: replaced (`model.to`, loading), or changed in place
        (its version counter moved). The copy lives as long as the model."""
        weights = list(model.parameters())
        try:
            versions = [w._version for w in weights]
        except RuntimeError:  # weights made under inference_mode keep no version: never kept
            return cls(model, dtype)
        kept = _PACKED.get(model)
        if (
            kept is not None
            and kept.dtype == dtype
            and kept.versions == versions
            # a weak reference to each weight's storage: a new tensor at a freed one's address
            # is not mistaken for it
            and all(ref() is w.untyped_storage() for ref, w in zip(kept.storages, weights, strict=True))
            and kept.addresses == [w.data_ptr() for w in weights]
        ):
            return kept.packed
        _PACKED.pop(model, None)  # the stale copy goes before the new one is made
        packed = cls(model, dtype)
        _PACKED[model] = _Kept(
            dtype,
            versions,
            [weakref.ref(w.untyped_storage()) for w in weights],
            [w.data_ptr() for w in weights],
            packed,
        )
        return packed

    @staticmethod
    def runs(device, dtype) -> bool:
        """Whether oneDNN multiplies `dtype` on this device natively (bf16 needs avx512_bf16 or AMX);
        x86 only, where it was measured (ARM's oneDNN runs through other kernels)."""
        import platform

        import torch

        if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
            return False
        if not torch.backends.mkldnn.is_available():
            return False
        return dtype == torch.float32 or (dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())

    def __init__(self, model, dtype):
        import torch

        with torch.no_grad():
            self.qkv, self.out, self.gate_up, self.down = [], [], [], []
            for layer in model.model.layers:
                attention, mlp = layer.self_attn, layer.mlp
                self.qkv.append(_packed(dtype, attention.q_proj, attention.k_proj, attention.v_proj))
                self.out.append(_packed(dtype, attention.o_proj))
                self.gate_up.append(_packed(dtype, mlp.gate_proj, mlp.up_proj))
                self.down.append(_packed(dtype, mlp.down_proj))
            attention = model.model.layers[0].self_attn
            self.qkv_widths = [p.out_features for p in (attention.q_proj, attention.k_proj, attention.v_proj)]
            self.head = _packed(dtype, model.lm_head)

    def mlp(self, index: int, mlp, h):
        """The model's MLP, down(act(gate(h)) * up(h)), with gate and up in one product."""
        gate, up = self.gate_up[index](h).chunk(2, dim=-1)
        return self.down[index](mlp.act_fn(gate) * up)


class _Kept(NamedTuple):
    """A model's packed copy and what its weights were when it was made."""

    dtype: object
    versions: list[int]
    storages: list[weakref.ref]
    addresses: list[int]
    packed: _Packed


_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> _Kept, gone with the model


def _packed(dtype, *linears) -> Callable:
    """x -> the linears' outputs side by side, from one packed copy of their weights (in `dtype`)."""
    import torch

    weight = torch.cat([linear.weight for linear in linears]) if len(linears) > 1 else linears[0].weight
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(dtype))
    bias = None
    if any(linear.bias is not None for linear in linears):
        bias = torch.cat(
            [
                linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.out_features)
                for linear in linears
            ]
        ).to(dtype)

    def apply(x):
        return torch.ops.mkldnn._linear_pointwise(x.to(dtype), packed, bias, "none", [], "")

    return apply


def attention(q, k, v, *, scale: float, mask=None, causal: bool = False):
    """(output, log-sum-exp per query) of softmax(q k^T * scale + mask) v; q [n, h, T, d], k/v [n, h, S, d].

    On CPU, PyTorch's fused flash-attention kernel, which returns the log-sum-exp that merging
    needs (public `scaled_dot_product_attention` does not), for many queries per head (the
    prefix part: 2.7x faster than plain products for 64 rows); for a few (a decode step's own
    suffix: the group's heads of one row) plain products, about twice as fast as the kernel's
    per-problem overhead (SmolLM2, bf16, one thread). k and v as given: a strided slice of the
    cache is multiplied as it is (`_decode_attention` copies it first where that is faster).
    """
    import torch

    if q.device.type == "cpu" and q.shape[-2] > FEW_QUERIES:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=mask, scale=scale
        )
        return out, lse
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    if causal:
        t, s = q.shape[-2], k.shape[-2]
        scores = scores.masked_fill(torch.ones(t, s, dtype=torch.bool, device=q.device).triu(s - t + 1), float("-inf"))
    if mask is not None:
        scores = scores + mask
    # The log-sum-exp from the softmax's largest weight, exp(top - lse): a third of logsumexp's cost.
    top = scores.amax(dim=-1)
    probs = torch.softmax(scores, dim=-1)
    lse = top - torch.log(probs.amax(dim=-1))
    out = torch.matmul(probs.to(v.dtype), v)
    return out, lse


def merge(out_a, lse_a, out_b, lse_b):
    """Two softmax parts over disjoint keys combined exactly: the attention over all the keys."""
    import torch

    # a's share of the softmax mass, e^lse_a / (e^lse_a + e^lse_b): three operations where
    # logaddexp and two exponentials took nine, 60 times a step.
    weight_a = torch.sigmoid(lse_a - lse_b)[..., None]
    return torch.lerp(out_b.float(), out_a.float(), weight_a).to(out_a.dtype)


class _Slots:
    """The suffix cache: keys and values per layer for `width` rows, written in place."""

    def __init__(self, net: _Llama, width: int, capacity: int):
        import torch

        shape = (width, net.kv_heads, capacity, net.head_dim)
        layers = len(net.body.layers)
        self.keys = [torch.zeros(shape, dtype=net.dtype, device=net.device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=net.dtype, device=net.device) for _ in range(layers)]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def ensure(self, length: int) -> None:
        """Room for `length` tokens in every slot: double (one copy) when it is short."""
        if length <= self.capacity:
            return
        capacity = max(length, 2 * self.capacity)
        for cache in (self.keys, self.values):
            for i, old in enumerate(cache):
                grown = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
                grown[:, :, : old.shape[2]] = old
                cache[i] = grown

    def widen(self, width: int) -> None:
        """`width` slots (new ones empty): more requests arrived than the stream has slots for."""
        for cache in (self.keys, self.values):
            for i, old in enumerate(cache):
                wider = old.new_zeros((width, *old.shape[1:]))
                wider[: old.shape[0]] = old
                cache[i] = wider


def stream(
    model,
    prompts: Sequence[Sequence[int]],
    budgets: Sequence[int],
    *,
    eos: set[int],
    pad: int,
    shared: int,
    batch_size: int | None = None,
    pick: Callable | None = None,
    finished: Callable[[int], None] | None = None,
) -> list[tuple[list[int], str]]:
    """(new tokens, finish reason) per prompt; all prompts share their first `shared` tokens.

    At most `batch_size` rows decode at once (all of them when None); rows that finish are
    replaced by the next waiting prompts. `pick(logits, requests)` chooses the
    next token of each row from its logits [n, vocab] (`requests` are the prompts' indices, for
    their generators); greedy when None. `finished(count)` hears how many prompts are answered
    so far, at each step that finishes one.
    """
    decoding = Stream(
        model, prompts[0][:shared], width=min(len(prompts), batch_size or len(prompts)), eos=eos, pad=pad, pick=pick
    )
    for i in repeats_together(prompts):
        decoding.add(i, prompts[i], budgets[i])
    results: dict = {}
    while not decoding.idle:
        done = decoding.step()
        for request, tokens, reason in done:
            results[request] = (tokens, reason)
        if done and finished is not None:
            finished(len(results))
    return [results[i] for i in range(len(prompts))]


def repeats_together(prompts: Sequence[Sequence[int]]) -> list[int]:
    """The order to add prompts to a Stream: each prompt asked again (a row's samples) right
    behind its first asking, so it starts from the tail that asking's slot holds (Stream._admit)
    rather than after the slot has taken other prompts.

    >>> repeats_together([[1, 2], [3], [1, 2], [4], [3]])
    [0, 2, 1, 4, 3]
    """
    first: dict = {}
    return sorted(range(len(prompts)), key=lambda i: first.setdefault(tuple(prompts[i]), i))


class Stream:
    """Requests that share one prefix, decoded at most `width` at a time; add more at any step.

        decoding = Stream(model, prefix, width=64, eos=eos, pad=pad)
        decoding.add("a", prompt, 128)       # any time, if decoding.admits(prompt)
        while not decoding.idle:
            for request, tokens, reason in decoding.step(): ...

    Slots whose rows finished take the next waiting requests at the next step, their tails in
    the same forward as the busy slots' tokens. A request whose whole tail a slot already holds
    (the same prompt asked again: a row's samples) starts from a copy of it (`_admit`).
    """

    def __init__(
        self, model, prefix: Sequence[int], *, width: int, eos: set[int], pad: int, pick: Callable | None = None
    ):
        import torch

        self.net = _Llama(model)
        self.prefix = list(prefix)
        self.width, self.pad, self.pick = width, pad, pick
        device = self.net.device
        self.eos_ids = torch.tensor(sorted(eos), device=device) if eos else None
        self.waiting: deque = deque()  # (request, tail as a tuple, budget)
        self.owner: list = []  # per slot: the request it decodes, None when free
        # The tail whose keys and values each slot's first positions hold (until the slot takes
        # another, finished or not), and for each such tail one slot holding it.
        self.holds: list = []
        self.holder: dict = {}
        self.tail_tokens = 0  # tail tokens through the model so far (a repeat's: its last one)
        self.tokens: dict = {}  # request -> its new tokens so far
        self.budgets: dict = {}
        self.slots: _Slots | None = None
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)  # suffix tokens cached per slot
        self.last = torch.zeros(0, dtype=torch.long, device=device)  # the token each slot feeds next
        with torch.inference_mode():
            self.prefix_kv = _prefix(self.net, self.prefix) if self.prefix else None

    def admits(self, prompt: Sequence[int]) -> bool:
        """Whether `prompt` starts with this stream's prefix and has a token of its own after it."""
        return len(prompt) > len(self.prefix) and list(prompt[: len(self.prefix)]) == self.prefix

    def add(self, request, prompt: Sequence[int], budget: int) -> None:
        assert self.admits(prompt), "the prompt does not start with the stream's prefix"
        self.waiting.append((request, tuple(prompt[len(self.prefix) :]), budget))

    @property
    def idle(self) -> bool:
        return not self.waiting and all(o is None for o in self.owner)

    def step(self) -> list[tuple[object, list[int], str]]:
        """One forward: a token for every busy slot, and waiting requests' tails into free slots.

        Returns the requests that finished: (request, new tokens, "stop" or "length").
        """
        import torch

        with torch.inference_mode():
            busy = [s for s, o in enumerate(self.owner) if o is not None]
            admitted, tails, repeated = self._admit()
            if not busy and not admitted and not repeated:
                return []
            device = self.net.device
            if repeated:
                self._start_from_held(repeated)
                busy = sorted(busy + [slot for slot, _, _ in repeated])  # they decode their tail's last token
            decoding = torch.tensor(busy, dtype=torch.long, device=device)
            lengths = self.lengths.index_select(0, decoding)
            self.slots.ensure(max([int(lengths.max()) + 1 if busy else 0, *map(len, tails)]))
            logits = _step(
                self.net, self.slots, self.prefix_kv, len(self.prefix),
                decoding, self.last.index_select(0, decoding), lengths, tails, admitted,
            )  # fmt: skip
            self.lengths[decoding] += 1
            self.lengths[admitted] = torch.tensor([len(t) for t in tails], dtype=torch.long, device=device)
            for slot, tail in zip(admitted, tails):
                self._hold(slot, tail)
            self.tail_tokens += sum(map(len, tails)) + len(repeated)
            return self._settle(busy + admitted, logits)

    def _admit(self) -> tuple[list[int], list[tuple], list[tuple[int, int, tuple]]]:
        """Waiting requests into free slots (new ones while under `width`): (slots whose tails this
        step prefills, those tails, repeats), up to PREFILL_TOKENS tail tokens a step.

        A repeat is a request whose whole tail some slot holds already, busy or not (the same
        prompt asked again: a build's samples of one row, each with its own seed): it takes that
        slot if it is free, else another with the tail's keys and values copied in, and decodes
        the tail's last token in this step's forward: (slot, holding slot, tail). A request whose
        tail this same step prefills for another waits for the next step, and starts from it then.
        """
        import torch

        free = [s for s, o in enumerate(self.owner) if o is None]
        grow = min(self.width - len(self.owner), len(self.waiting) - len(free))
        if grow > 0:  # new slots: the stream's first requests, or more arrived than it held
            free += list(range(len(self.owner), len(self.owner) + grow))
            self.owner += [None] * grow
            self.holds += [None] * grow
            self.lengths = torch.cat([self.lengths, self.lengths.new_zeros(grow)])
            self.last = torch.cat([self.last, self.last.new_full((grow,), self.pad)])
            if self.slots is None:
                self.slots = _Slots(self.net, len(self.owner), FIRST_CAPACITY)
            else:
                self.slots.widen(len(self.owner))
        admitted, tails, repeated, tokens = [], [], [], 0
        later: list = []  # repeats of a tail this step prefills
        while free and self.waiting and len(later) < self.width:
            request, tail, budget = self.waiting[0]
            holding = self.holder.get(tail)
            if holding is not None:
                slot = holding if holding in free else free[0]
                free.remove(slot)
                repeated.append((slot, holding, tail))
            elif tail in tails:
                later.append(self.waiting.popleft())
                continue
            elif tails and tokens + len(tail) > PREFILL_TOKENS:
                break
            else:
                slot = free.pop(0)
                admitted.append(slot)
                tails.append(tail)
                tokens += len(tail)
            self.waiting.popleft()
            self.owner[slot] = request
            self.tokens[request], self.budgets[request] = [], budget
        self.waiting.extendleft(reversed(later))
        return admitted, tails, repeated

    def _start_from_held(self, repeated: list[tuple[int, int, tuple]]) -> None:
        """Repeats' slots ready to decode their tail's last token: the tail's other keys and values
        copied from the slot holding them (before this step's forward writes any slot), the slot's
        length and next token set."""
        import torch

        device = self.net.device
        copies = [(slot, holding, tail) for slot, holding, tail in repeated if slot != holding]
        span = max((len(tail) - 1 for *_, tail in copies), default=0)
        if span:
            to, source = (torch.tensor(column, device=device) for column in list(zip(*copies))[:2])
            for cache in (self.slots.keys, self.slots.values):
                for layer in cache:
                    layer[to, :, :span] = layer[source, :, :span]
        slots = [slot for slot, _, _ in repeated]
        self.lengths[slots] = torch.tensor([len(tail) - 1 for _, _, tail in repeated], device=device)
        self.last[slots] = torch.tensor([tail[-1] for _, _, tail in repeated], device=device)
        for slot, _, tail in repeated:
            self._hold(slot, tail)

    def _hold(self, slot: int, tail: tuple) -> None:
        """`slot`'s first positions hold `tail` from this step on (what they held before is gone)."""
        before = self.holds[slot]
        if before is not None and self.holder.get(before) == slot:
            del self.holder[before]
        self.holds[slot] = tail
        self.holder[tail] = slot

    def _settle(self, rows: list[int], logits) -> list:
        """Each row's next token chosen and recorded (`logits` in `rows`' order); the finished
        requests, their slots freed."""
        import torch

        requests = [self.owner[s] for s in rows]
        chosen = self.pick(logits.float(), requests) if self.pick is not None else logits.argmax(dim=-1)
        if self.eos_ids is not None:
            ended = torch.isin(chosen, self.eos_ids).tolist()
        else:
            ended = [False] * len(rows)
        self.last[rows] = chosen
        done = []
        for slot, request, token, stop in zip(rows, requests, chosen.tolist(), ended):
            reason = None
            if stop:
                reason = "stop"
            else:
                self.tokens[request].append(token)
                if len(self.tokens[request]) >= self.budgets[request]:
                    reason = "length"
            if reason is not None:
                done.append((request, self.tokens.pop(request), reason))
                del self.budgets[request]
                self.owner[slot] = None
        return done


def _prefix(net: _Llama, tokens: Sequence[int]):
    """Keys and values of the shared prefix, one copy per layer: [1, KV, P, d] each."""
    import torch

    ids = torch.tensor([list(tokens)], dtype=torch.long, device=net.device)
    positions = torch.arange(len(tokens), device=net.device)[None, :]
    kept: list = []

    def attend(layer, q, k, v):
        kept.append((k.contiguous(), v.contiguous()))  # every step reads them: laid out once
        out, _ = attention(q, _expand(k, net.group), _expand(v, net.group), scale=net.scale, causal=True)
        return out

    net.forward(ids, positions, attend)
    return kept


def _step(net: _Llama, slots: _Slots, prefix_kv, shared: int, decoding, last, lengths, tails, admitted):
    """One forward over the busy slots' next tokens and the admitted rows' tails; the logits of
    each busy slot's token, then of each tail's last token: [len(decoding) + len(tails), vocab].

    `decoding` [B]: the busy slots, feeding `last` [B] at suffix position `lengths` [B]; `tails`
    go into the slots `admitted`, from suffix position 0. Everything is one packed sequence for
    the model's products: [1, B + tail tokens], no padding. Every query attends to the one prefix
    copy together (`_prefix_part`), and to its own row's suffix: a decode token to its slot's
    cache, a tail token causally to its own tail.
    """
    import torch

    device = net.device
    b = last.shape[0]
    ids = torch.cat([last, torch.tensor([token for tail in tails for token in tail], dtype=torch.long, device=device)])
    positions = torch.cat([shared + lengths, *(shared + torch.arange(len(tail), device=device) for tail in tails)])
    decode = _decode_attention(net, slots, prefix_kv, decoding, lengths) if b else None
    prefill = _tail_attention(net, slots, tails, admitted) if tails else None

    def attend(layer, q, k, v):  # q [1, H, N, d], k/v [1, KV, N, d]: decode tokens first, then the tails
        done, parts = None, []  # done: the decode rows' output with the prefix in; parts: (own, lse)
        if decode is not None:
            out, lse = decode(layer, q[:, :, :b], k[:, :, :b], v[:, :, :b])
            if lse is None:
                done = out
            else:
                parts.append((out, lse))
        if prefill is not None:
            parts.append(prefill(layer, q[:, :, b:], k[:, :, b:], v[:, :, b:]))
        if not parts:
            return done
        own, own_lse = (torch.cat(part, dim=2) for part in zip(*parts)) if len(parts) > 1 else parts[0]
        if prefix_kv is not None:  # every query still without it, against the prefix at once
            rest = q[:, :, b:] if done is not None else q
            own = merge(*_prefix_part(net, rest, prefix_kv[layer]), own, own_lse)
        return own if done is None else torch.cat([done, own], dim=2)

    hidden = net.forward(ids[None], positions[None], attend)[0]
    ends = [b + end - 1 for end in accumulate(map(len, tails))]
    return net.logits(hidden[torch.tensor([*range(b), *ends], dtype=torch.long, device=device)])


def _decode_attention(net: _Llama, slots: _Slots, prefix_kv, decoding, lengths) -> Callable:
    """attend(layer, q, k, v) for one new token per busy slot (q [1, H, B, d]): its keys and values
    written at the slot's length, its query against the slot's suffix up to and including them.
    `decoding` [B]: the busy slots, `lengths` [B] theirs. Returns (output [1, H, B, d], lse
    [1, H, B]) for the caller to merge with the prefix's part, or (output, None) with the prefix
    already in:

    Up to ONE_SOFTMAX_QUERIES queries per key/value head, one softmax over the prefix's scores and
    the suffix's side by side (the prefix's still one product for the whole batch against its one
    copy): 17 operations a layer fewer than two attentions merged through their log-sum-exps (86
    for 103 at one row), and a step of a few rows is mostly such small operations (a stream's
    last answers; in a build of 16 in flight, a third of the steps). Above it, the suffix alone:
    the flash kernel over the prefix, for these rows and any tails admitted in the step at once,
    and the merge were faster than every row's prefix scores materialised (0.96-0.98x at 32-64
    rows; BENCHMARKS.md).

    The product runs over every slot when at least half are busy: the others' outputs (free slots,
    or slots whose new tails this same step writes) are computed and dropped, which costs less
    than gathering the busy slots' caches, a copy of every layer's cache at every step that a
    stream admits a row. With few busy slots (a stream's last answers) it gathers them.
    """
    import torch

    b, width = decoding.shape[0], slots.keys[0].shape[0]
    span = int(lengths.max()) + 1
    whole = 2 * b >= width
    every = b == width  # `decoding` holds distinct slots in order: all of them, 0..width-1
    rows = width if whole else b
    shared = prefix_kv[0][0].shape[2] if prefix_kv is not None else 0
    # Each slot sees the prefix and its own suffix up to and including the token written now
    # (the others' rows see their first position at least: finite, and dropped).
    seen = (
        lengths
        if not whole or every
        else torch.zeros(width, dtype=torch.long, device=net.device).index_copy(0, decoding, lengths)
    )
    mask = torch.zeros((rows, 1, 1, shared + span), dtype=torch.float32, device=net.device)
    hidden = torch.arange(span, device=net.device)[None, :] > seen[:, None]
    mask[..., shared:].masked_fill_(hidden[:, None, None], float("-inf"))
    kv_heads, group, dim = net.kv_heads, net.group, net.head_dim
    many = shared > 0 and rows * group > ONE_SOFTMAX_QUERIES

    def attend(layer, q, k, v):
        keys, values = slots.keys[layer], slots.values[layer]
        keys[decoding, :, lengths] = k[0].transpose(0, 1)
        values[decoding, :, lengths] = v[0].transpose(0, 1)
        keys, values = keys[:, :, :span], values[:, :, :span]
        # The group's query heads of one key/value head read it together: [B, KV, group, d].
        grouped = q[0].transpose(0, 1).reshape(b, kv_heads, group, dim)
        if not whole:
            keys, values = keys.index_select(0, decoding), values.index_select(0, decoding)
        elif not every:
            grouped = grouped.new_zeros((width, *grouped.shape[1:])).index_copy(0, decoding, grouped)
        # k and v are a slice of the preallocated cache (its capacity strides). In bf16 a product
        # over the slice took 4x as long as copying it and multiplying the copy (64 rows, AVX-512
        # bf16, one thread); in fp32 the product over the slice is twice as fast as copy and
        # product (64 rows, AVX2, torch 2.13: BENCHMARKS.md).
        if keys.dtype != torch.float32:
            keys, values = keys.contiguous(), values.contiguous()
        if many:  # the suffix's softmax alone: the caller merges it with the prefix's (flash kernel)
            out, lse = attention(grouped, keys, values, scale=net.scale, mask=mask[..., shared:])
            if whole and not every:
                out, lse = out.index_select(0, decoding), lse.index_select(0, decoding)
            return out.reshape(b, net.heads, dim).transpose(0, 1)[None], lse.reshape(b, net.heads).T[None]
        scores = torch.matmul(grouped, keys.transpose(-1, -2))  # [rows, KV, group, span]
        if shared:
            prefix_keys, prefix_values = prefix_kv[layer]  # [1, KV, P, d]: one read for every row
            flat = grouped.transpose(0, 1).reshape(kv_heads, rows * group, dim)
            on_prefix = torch.matmul(flat, prefix_keys[0].transpose(-1, -2))
            scores = torch.cat([on_prefix.view(kv_heads, rows, group, shared).transpose(0, 1), scores], dim=-1)
        probs = torch.softmax(scores.float() * net.scale + mask, dim=-1).to(values.dtype)
        out = torch.matmul(probs[..., shared:], values)
        if shared:
            weights = probs[..., :shared].transpose(0, 1).reshape(kv_heads, rows * group, shared)
            out = out + torch.matmul(weights, prefix_values[0]).view(kv_heads, rows, group, dim).transpose(0, 1)
        if whole and not every:
            out = out.index_select(0, decoding)
        return out.reshape(b, net.heads, dim).transpose(0, 1)[None], None

    return attend


def _tail_attention(net: _Llama, slots: _Slots, tails: list[list[int]], rows: list[int]) -> Callable:
    """attend(layer, q, k, v) for new rows' tails packed back to back (q [1, H, N, d]): their keys
    and values written into their slots from position 0, each tail attending causally to itself.
    Returns (output [1, H, N, d], lse [1, H, N]).

    Only this causal attention lays the tails out per row, right-padded with copies of the row's
    last token: a row's suffix starts at slot position 0, and under the causal mask no real token
    sees the padding after it (which later steps overwrite or mask). The model's products run over
    the packed tokens (the demo's tails run from 25 to 47 tokens: padded to each admission's
    longest, a quarter of the tokens were padding).
    """
    import torch

    device = net.device
    n, t = len(tails), max(map(len, tails))
    lengths = [len(tail) for tail in tails]
    starts = [0, *accumulate(lengths)][:-1]  # each tail's first index in the packed sequence
    # padded[i, j]: the packed index of row i's token j; real[m]: where packed token m sits in the
    # padded rows, flattened.
    padded = torch.tensor(
        [[start + min(j, length - 1) for j in range(t)] for start, length in zip(starts, lengths)], device=device
    )
    real = torch.tensor([i * t + j for i, length in enumerate(lengths) for j in range(length)], device=device)
    index = torch.tensor(rows, device=device)

    def attend(layer, q, k, v):
        qp, kp, vp = (x[0][:, padded].transpose(0, 1) for x in (q, k, v))  # [n, heads, t, d]
        slots.keys[layer][index, :, :t] = kp
        slots.values[layer][index, :, :t] = vp
        own, own_lse = attention(qp, _expand(kp, net.group), _expand(vp, net.group), scale=net.scale, causal=True)
        heads = own.shape[1]
        own = own.transpose(0, 1).reshape(heads, n * t, -1)[:, real][None]  # packed again: [1, heads, N, d]
        own_lse = own_lse.transpose(0, 1).reshape(heads, n * t)[:, real][None]
        return own, own_lse

    return attend


def _prefix_part(net: _Llama, q, kv):
    """Every row's queries against the one prefix copy, in one product per key/value head.

    q [n, KV * group or KV, ..., d] is laid out as [1, KV, n * rest, d] so the prefix [1, KV, P, d]
    is read once for the whole batch; returns (output, lse) in q's shape.
    """
    keys, values = kv
    shape = q.shape
    n = shape[0]
    grouped = q.reshape(n, net.kv_heads, -1, net.head_dim)
    rest = grouped.shape[2]
    flat = grouped.transpose(0, 1).reshape(1, net.kv_heads, n * rest, net.head_dim)
    out, lse = attention(flat, keys, values, scale=net.scale)
    out = out.reshape(net.kv_heads, n, rest, net.head_dim).transpose(0, 1).reshape(shape)
    lse = lse.reshape(net.kv_heads, n, rest).transpose(0, 1).reshape(shape[:-1])
    return out, lse


def _expand(kv, group: int):
    """Key/value heads repeated for their query heads (grouped-query attention): [n, H, S, d]."""
    if group == 1:
        return kv
    n, heads, length, dim = kv.shape
    return kv[:, :, None].expand(n, heads, group, length, dim).reshape(n, heads * group, length, dim)
