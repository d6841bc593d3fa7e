"""The training loss: cross-entropy over the teacher's tokens, with the vocabulary projection
computed only where a label is.

    loss = answer_loss(model, batch, num_items_in_batch)

A record is mostly prompt: the erase message and the task's text, with a short answer after it
(`Answer: positive` is five tokens under a hundred of prompt). The model's own loss projects
every position onto the whole vocabulary and then ignores most of them; for SmolLM2 that
projection is 49,152 x 576, about a fifth of a training step's arithmetic and, in fp32, 800 MB
of logits and as much again of their gradient for a 4,096-token batch. Here the positions whose
next token is labelled are picked first and only those go through the head (`logits_to_keep`,
which transformers' causal LMs take as a tensor of positions). The value is the model's own:
the sum over labelled tokens divided by `num_items_in_batch` (the Trainer's count across
gradient accumulation) or, without it, their mean (benchmarks/bench_train.py, BENCHMARKS.md).
"""

from __future__ import annotations

from orcac.runtime.models.chat_format import IGNORE  # the label of a token the loss skips


def answer_loss(model, inputs: dict, num_items_in_batch=None, *, return_outputs: bool = False):
    """The loss of one batch from `input_ids`, `labels` and whatever else the collator gave."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    targets = labels[:, 1:]  # the logits at position p predict the token at p + 1
    # One set of positions for every row of the batch (logits_to_keep is per position, not per
    # row): those where any row has a label; a row without one there is ignored by the loss.
    keep = (targets != IGNORE).any(dim=0).nonzero().flatten()
    forward = {name: value for name, value in inputs.items() if name != "labels"}
    # use_cache=False: with a cache, transformers builds a plain causal mask and the examples
    # packed in one row attend to each other (train also sets it in the model's config)
    outputs = model(**forward, logits_to_keep=keep, use_cache=False)
    logits = outputs.logits.float()
    chosen = targets[:, keep]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), chosen.reshape(-1), ignore_index=IGNORE, reduction="sum")
    if num_items_in_batch is None:
        num_items_in_batch = (chosen != IGNORE).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    loss = total / num_items_in_batch
    return (loss, outputs) if return_outputs else loss
