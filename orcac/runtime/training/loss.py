"""The training loss: cross-entropy over the teacher's tokens, with the vocabulary projection
computed only where a label is, a chunk of positions at a time.

    loss = answer_loss(model, batch, num_items_in_batch)

A record is mostly prompt: the erase message and the task's text, with a short answer after it
(`Answer: positive` is five tokens under a hundred of prompt). The model's own loss projects
every position onto the whole vocabulary and then ignores most of them; for SmolLM2 that
projection is 49,152 x 576, about a fifth of a training step's arithmetic. Here the model runs
without its head (`logits_to_keep` empty, the last hidden states kept), the labelled positions
are picked from the hidden states, and only those go through the head.

Long answers (Orca 2's explanations, packed to 4,096 tokens) label most positions, and then the
head's output is the largest thing a step holds: batch x length x 49,152 fp32 logits, plus
their upcast and the log-softmax's gradient, 9 GiB for 4 x 4,096 tokens. So the labelled
positions go through the head CHUNK at a time: projection, log-softmax and loss for one chunk,
the chunk's logits dropped, and recomputed in backward (`torch.utils.checkpoint`); the head's
memory is bounded by the chunk whatever the batch. A batch with at most CHUNK labelled
positions (every batch of the demo) takes one plain pass, with no recomputation.

Why written here rather than taken: Liger Kernel's fused linear cross-entropy and Apple's Cut
Cross-Entropy are Triton kernels (no CPU path; CCE's torch fallback compiles with
torch.compile and materialises a chunk the same way), and neither is in the lock; TRL's own
chunked log-prob head also computes entropy and accuracy metrics (on CPU a whole step 1.7x
slower, BENCHMARKS.md). torchtune's LinearCrossEntropyLoss is this same design. Checkpointing
a chunk costs one more head projection per chunk in backward, only when there is more than one.

The value is the model's own: the sum over labelled tokens divided by `num_items_in_batch`
(the Trainer's count across gradient accumulation) or, without it, their mean
(benchmarks/bench_train.py, BENCHMARKS.md).
"""

from __future__ import annotations

from functools import partial

from orcac.runtime.models.chat_format import IGNORE  # the label of a token the loss skips

# Labelled positions projected onto the vocabulary at once: 1,024 x 49,152 fp32 logits are
# 192 MiB, about 0.8 GiB with their upcast and gradients (train/memory.py counts it).
CHUNK = 1024


def answer_loss(model, inputs: dict, num_items_in_batch=None, *, return_outputs: bool = False):
    """The loss of one batch from `input_ids`, `labels` and whatever else the collator gave."""
    import torch

    labels = inputs["labels"]
    targets = labels[:, 1:]  # the hidden state at position p predicts the token at p + 1
    labelled = targets != IGNORE
    forward = {name: value for name, value in inputs.items() if name != "labels"}
    no_positions = torch.zeros(0, dtype=torch.long, device=labels.device)
    # use_cache=False: with a cache, transformers builds a plain causal mask and the examples
    # packed in one row attend to each other (train also sets it in the model's config).
    # The last hidden state is the final norm's output, what the head reads.
    outputs = model(**forward, logits_to_keep=no_positions, output_hidden_states=True, use_cache=False)
    hidden = outputs.hidden_states[-1][:, :-1][labelled]  # (labelled positions, hidden)
    total = chunked_cross_entropy(_head(model), hidden, targets[labelled])
    if num_items_in_batch is None:
        num_items_in_batch = labelled.sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    loss = total / num_items_in_batch
    return (loss, outputs) if return_outputs else loss


def chunked_cross_entropy(head, hidden, targets, chunk: int | None = None):
    """The summed cross-entropy of `head(hidden)` against `targets`, `chunk` rows at a time."""
    from torch.utils.checkpoint import checkpoint

    chunk = chunk or CHUNK
    if len(hidden) <= chunk:
        return _summed_cross_entropy(head, hidden, targets)
    total = 0
    for start in range(0, len(hidden), chunk):
        rows = slice(start, start + chunk)
        total = total + checkpoint(
            partial(_summed_cross_entropy, head), hidden[rows], targets[rows], use_reentrant=False
        )
    return total


def _summed_cross_entropy(head, hidden, targets):
    import torch.nn.functional as F

    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def _head(model):
    """The vocabulary projection of `model`, under DDP's and peft's wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(model, "get_base_model"):  # peft: the head as LoRA left it (trained in full or not)
        model = model.get_base_model()
    return model.get_output_embeddings()
