"""Pass `estimate`: teacher calls, prompt tokens and cost, before anything is called.

An approximation, and documented as one: prompt tokens are ceil(characters / 4) of the
rendered system + user messages per call; a task whose strategy is still to be chosen
is counted with its longest candidate. Cost is prompt tokens at the model's input price
plus `max_tokens` per call at its output price (an upper bound on completions), from
litellm's bundled price map, read as JSON without importing litellm. `local/...`
teachers cost 0; a model litellm has no price for costs None.
"""

from __future__ import annotations

import importlib.util
import json
import math
from functools import lru_cache
from pathlib import Path

PRICE_MAP = "model_prices_and_context_window_backup.json"


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


def tokens(chars: int) -> int:
    """>>> tokens(9)
    3
    """
    return math.ceil(chars / 4)


def cost(model: str, prompt_tokens: int, calls: int, max_tokens: int) -> float | None:
    p = price(model)
    if p is None:
        return None
    return round(prompt_tokens * p[0] + calls * max_tokens * p[1], 6)
