"""Will a training step fit in memory? An estimate before a stage starts, against what is free.

    need = step_memory(model, trainable, tokens, device)   # bytes, by part
    fit(need, free_memory(device))                          # "as is", "checkpointing", or OrcacError

What a step holds beyond what is already resident:

  weights       every parameter on a GPU; on the CPU only those still memory-mapped from their
                file (transformers maps fp32 safetensors, as the demo's student is kept): not
                resident until the first step reads them, then copied into memory when the
                optimizer writes them (0.5 GB for the 135M); weights already in memory are used,
                not free
  gradients     one per trainable parameter, in the parameter's dtype
  optimizer     AdamW's two moments per trainable parameter, in fp32
  activations   what backward needs, per token per layer: 9 x hidden values in the weights'
                dtype (the fp32 residual stream, the two norms' inputs and outputs, the rotary
                q and k, which bf16 autocast leaves in fp32) and 4 x intermediate in the compute
                dtype (the MLP's gate, up, activation and product); with activation
                checkpointing only each layer's input (hidden, weights' dtype) plus one layer's
                worth while it is recomputed, and, measured and not explained,
                CHECKPOINTED_LAYER_EXTRA for every other layer, whatever the rows' length and
                number (1.2 GiB at 30 layers; BENCHMARKS.md)
  logits        the vocabulary head: train/loss.py projects at most loss.CHUNK labelled
                positions at a time, so tokens x vocabulary is bounded by the chunk: its
                logits in the compute dtype and three fp32 tensors (the upcast, the
                log-softmax, their gradient), 0.7 GB for SmolLM2's 49,152-entry vocabulary

The tokens of a step are the longest row of the stage's (packed) dataset times the batch size.
Measured against the real peak (benchmarks/bench_memory.py, BENCHMARKS.md): the sum is within
15% of the resident memory a step adds, on the demo's shape and on Orca 2's (4 x 4,096 tokens)
without checkpointing, and with checkpointing at rows of 512 to 4,096 tokens, Orca 2's shape on
the 135M included.
Free memory is the device's (`torch.cuda.mem_get_info`) or the machine's: psutil's available
memory, capped by the cgroup limit of a container, which psutil does not see.

The fit: a step goes without activation checkpointing only when its estimate (MARGIN included)
is at most HEADROOM of what is free; above that, the stage turns checkpointing on (a third more
compute) and says so, and if even that does not fit in what is free it refuses in one line that
says what to lower. Free memory is read once, at the stage's start, on a machine others share:
the headroom keeps room for what they take during the stage and for the estimate's own error.
Where it is wrong anyway, train/guard.py ends the run in one line instead of the kernel's `Killed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.training.loss import CHUNK

MARGIN = 1.2  # allocator fragmentation, temporaries the formula leaves out
# The most of the free memory (read at the stage's start) a step may plan to take without activation
# checkpointing: the measured peak has been up to 10% above the estimate (BENCHMARKS.md), and on a
# shared machine what is free at the start is not what is free an hour later.
HEADROOM = 0.85
GB = 1024**3  # shown as "GB": GiB, as free(1) and the OOM killer count
# Held with activation checkpointing by every layer but the recomputed one beyond its input: 39-50 MiB
# on the 135M's 30 layers at 512 x 8 and 4,096 x 4 tokens alike (and in forward-only probes at 2,048
# and 4,096-token rows), so not the row length squared it was first taken for; no tensor the formula
# names (the allocator's, perhaps: BENCHMARKS.md).
CHECKPOINTED_LAYER_EXTRA = 44 * 1024**2
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class StepMemory:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    checkpointed_activations: int
    logits: int

    def total(self, *, checkpointing: bool = False, margin: bool = True) -> int:
        activations = self.checkpointed_activations if checkpointing else self.activations
        return int(
            (MARGIN if margin else 1) * (self.weights + self.gradients + self.optimizer + activations + self.logits)
        )

    def parts(self, *, checkpointing: bool = False) -> str:
        activations = self.checkpointed_activations if checkpointing else self.activations
        named = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer", self.optimizer),
            ("activations", activations),
            ("logits", self.logits),
        ]
        return ", ".join(f"{name} {_gb(size)}" for name, size in named if size)


def step_memory(model, *, tokens: int, compute_bytes: int, on_gpu: bool) -> StepMemory:
    """The estimate for one optimizer step of `model` over `tokens` tokens (batch x row length)."""
    config = model.config.get_text_config()
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    vocab = config.vocab_size
    parameters = list(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in parameters)
    weight_bytes = parameters[0].element_size() if parameters else 4
    trainable = [p for p in parameters if p.requires_grad]
    per_layer = 9 * hidden * weight_bytes + 4 * intermediate * compute_bytes
    activations = tokens * layers * per_layer
    checkpointed = tokens * (layers * hidden * weight_bytes + per_layer) + (layers - 1) * CHECKPOINTED_LAYER_EXTRA
    return StepMemory(
        weights=weights if on_gpu else _file_mapped_bytes(parameters),
        gradients=sum(p.numel() * p.element_size() for p in trainable),
        optimizer=sum(2 * p.numel() * 4 for p in trainable),
        activations=activations,
        # never more than without it: the per-layer extra outweighs a small model's activations
        checkpointed_activations=min(checkpointed, activations),
        logits=min(tokens, CHUNK) * vocab * (compute_bytes + 3 * 4),
    )


def _file_mapped_bytes(parameters) -> int:
    """Bytes of the parameters whose storage lies in a file mapping of this process (Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    files = []
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            start, end = fields[0].split("-")
            files.append((int(start, 16), int(end, 16)))
    return sum(
        p.numel() * p.element_size() for p in parameters if any(start <= p.data_ptr() < end for start, end in files)
    )


def free_memory(on_gpu: bool) -> tuple[int, str]:
    """(bytes free, where) on the training device."""
    if on_gpu:
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free), f"on {torch.cuda.get_device_name(0)}"
    import psutil

    free = int(psutil.virtual_memory().available)
    limit = cgroup_room()
    if limit is not None and limit < free:
        return limit, "in this container (cgroup limit)"
    return free, "on this machine"


def cgroup_room(root: Path = CGROUP) -> int | None:
    """What the container's memory limit leaves: limit - usage (cgroup v2, else v1), or None."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:  # no limit
            return None
        return max(0, int(limit) - usage)
    return None


def fit(need: StepMemory, free: int, where: str, *, stage: str, batch_size: int, max_length: int) -> bool:
    """Whether to turn activation checkpointing on; raises OrcacError when even that does not fit."""
    if need.total() <= HEADROOM * free:
        return False
    if need.total(checkpointing=True) <= free:
        return True
    raise OrcacError(
        f"stage {stage}: a training step needs about {_gb(need.total(checkpointing=True))} even with activation "
        f"checkpointing ({need.parts(checkpointing=True)}), more than the {_gb(free)} free {where}",
        hint=f"lower train.batch_size (now {batch_size}) or max_length (now {max_length}): the activations grow "
        "with both (raise grad_accum to keep the batch); a LoRA adapter (train { lora { ... } }) saves the "
        "gradients and optimizer state",
    )


def checkpointing_line(need: StepMemory, free: int, where: str) -> str:
    """What a stage prints when `fit` turned activation checkpointing on."""
    return (
        f"a step needs about {_gb(need.total())} without activation checkpointing ({need.parts()}), more than "
        f"{HEADROOM:.0%} of the {_gb(free)} free {where} (the rest is kept for the estimate's error and for what "
        f"others take during the stage): activation checkpointing on ({_gb(need.total(checkpointing=True))}, "
        "a third more compute)"
    )


def _gb(size: int) -> str:
    return f"{size / GB:.1f} GB"
