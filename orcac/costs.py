"""Pass `estimate`: teacher calls, prompt tokens and cost, before anything is called.

An approximation, and documented as one: prompt tokens are ceil(characters / 4) of the
rendered system + user messages per call; a task whose strategy is still to be chosen
is counted with its longest candidate. Cost is prompt tokens at the model's input price
plus `max_tokens` per call at its output price (an upper bound on completions), from
litellm's bundled price map, read as JSON without importing litellm. `local/...`
teachers cost 0; a model litellm has no price for costs None. A teacher with `mode = batch`
is priced at the map's batch prices (`input_cost_per_token_batches`), or where it has none at
BATCH_DISCOUNT of the online price, which `orcac build --dry-run` says it assumed.
"""

from __future__ import annotations

import importlib.util
import json
import math
from functools import lru_cache
from pathlib import Path

PRICE_MAP = "model_prices_and_context_window_backup.json"
BATCH_DISCOUNT = 0.5  # assumed when the price map has no batch price: OpenAI's and Anthropic's discount


@lru_cache(maxsize=1)
def _prices() -> dict:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.origin:
        return {}
    p = Path(spec.origin).parent / PRICE_MAP
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token, 0 for local models, None when unknown.

    >>> price("local/smollm2-135m-instruct")
    (0.0, 0.0)
    """
    if model.startswith("local/"):
        return (0.0, 0.0)
    prices = _prices()
    candidates = [model]
    if "/" in model:
        provider, bare = model.split("/", 1)
        candidates.append(bare)
    for key in candidates:
        entry = prices.get(key)
        if entry and entry.get("input_cost_per_token") is not None:
            if key != model and entry.get("litellm_provider") not in (None, model.split("/", 1)[0]):
                continue
            return float(entry["input_cost_per_token"]), float(entry.get("output_cost_per_token") or 0.0)
    return None


def batch_price(model: str) -> tuple[float, float, str] | None:
    """(input, output) USD per token through the provider's batch API, and where they came from.

    >>> batch_price("gpt-4o-mini")
    (7.5e-08, 3e-07, "litellm's batch price")
    """
    online = price(model)
    if online is None or model.startswith("local/"):
        return None if online is None else (0.0, 0.0, "local model")
    prices = _prices()
    for key in (model, model.split("/", 1)[-1]):
        entry = prices.get(key) or {}
        if entry.get("input_cost_per_token_batches") is not None:
            output = entry.get("output_cost_per_token_batches")
            return (
                float(entry["input_cost_per_token_batches"]),
                float(output) if output is not None else online[1] * BATCH_DISCOUNT,
                "litellm's batch price",
            )
    return (online[0] * BATCH_DISCOUNT, online[1] * BATCH_DISCOUNT, f"assumed {BATCH_DISCOUNT:.0%} of the online price")


def tokens(chars: int) -> int:
    """The one token estimate before anything is called: characters / 4, rounded up.

    >>> tokens(9)
    3
    """
    return math.ceil(chars / 4)


def prompt_tokens(messages) -> int:
    """A request's prompt tokens, estimated: `tokens` over its messages' text.

    >>> prompt_tokens([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    3
    """
    return tokens(sum(len(str(m.get("content") or "")) for m in messages))


def cost(model: str, prompt_tokens: int, calls: int, max_tokens: int, *, batch: bool = False) -> float | None:
    p = batch_price(model) if batch else price(model)
    if p is None:
        return None
    return round(prompt_tokens * p[0] + calls * max_tokens * p[1], 6)


def calls_cost(teacher, prompt_tokens: int, calls: int, max_tokens: int | None = None) -> float | None:
    """What `calls` calls to `teacher` (a TeacherPlan) cost, at its batch prices when its
    `mode` is batch; each completion as long as `max_tokens` (default: the teacher's). No
    call costs nothing, whatever the model."""
    if not calls:
        return 0.0
    budget = teacher.max_tokens if max_tokens is None else max_tokens
    return cost(teacher.model, prompt_tokens, calls, budget, batch=teacher.mode == "batch")


def shown(value: float | None) -> str:
    """A cost as the dry runs print it."""
    return "unknown" if value is None else f"${value:,.4f}"


def shown_total(values) -> str:
    """The sum of costs as the dry runs print it: what is known, `+?` when some are unknown."""
    values = list(values)
    known = sum(v for v in values if v is not None)
    unknown = any(v is None for v in values)
    return "unknown" if unknown and not known else f"${known:,.4f}" + ("+?" if unknown else "")
