"""The stage's choice between training as is, with activation checkpointing, or not at all."""

from __future__ import annotations

import pytest

from orcac.errors import OrcacError
from orcac.runtime.training import memory

GB = memory.GB


def _need(activations_gb: float, checkpointed_gb: float) -> memory.StepMemory:
    """A step of 1 GB of gradients, 2 GB of optimizer state, 1 GB of head, and the activations given."""
    return memory.StepMemory(
        weights=0,
        gradients=1 * GB,
        optimizer=2 * GB,
        activations=int(activations_gb * GB),
        checkpointed_activations=int(checkpointed_gb * GB),
        logits=1 * GB,
    )


def _fit(need, free_gb: float) -> bool:
    return memory.fit(need, int(free_gb * GB), "on this machine", stage="s", batch_size=4, max_length=4096)


def test_a_step_within_the_headroom_of_what_is_free_trains_as_is():
    need = _need(12, 2)  # 16 GB, 19.2 GB with the margin
    assert need.total() == pytest.approx(19.2 * GB, rel=1e-6)
    assert _fit(need, 24) is False  # 19.2 <= 0.85 x 24 = 20.4


def test_a_step_that_fits_in_what_is_free_but_not_its_headroom_turns_checkpointing_on():
    """Orca 2's stage 3 began with about 21 GB free and a 19.2 GB estimate: it fitted, so the stage
    trained without checkpointing and left 2 GB to the rest of the machine (BENCHMARKS.md)."""
    need = _need(12, 2)
    assert _fit(need, 21) is True  # 19.2 > 0.85 x 21 = 17.85
    assert _fit(need, 19.2 / memory.HEADROOM + 0.01) is False  # the boundary: the headroom, not the step
    line = memory.checkpointing_line(need, int(21 * GB), "on this machine")
    assert line.startswith("a step needs about 19.2 GB without activation checkpointing (gradients 1.0 GB,")
    assert "more than 85% of the 21.0 GB free on this machine" in line
    assert line.endswith("activation checkpointing on (7.2 GB, a third more compute)")


def test_checkpointing_uses_all_that_is_free_before_refusing():
    """The headroom chooses between as is and checkpointing; with checkpointing a step that fits in
    what is free still trains (the guard catches the estimate's error), and one that does not is refused."""
    need = _need(12, 2)  # 7.2 GB with checkpointing and the margin
    assert _fit(need, 7.3) is True
    with pytest.raises(
        OrcacError, match="needs about 7.2 GB even with activation checkpointing .* more than the 7.1 GB"
    ):
        _fit(need, 7.1)


def test_weights_still_mapped_from_their_file_are_counted_on_the_cpu(tiny):
    """transformers memory-maps fp32 safetensors: those pages come in with the first step and are
    copied when the optimizer writes them (0.5 GB for the 135M), so they count; a model made in
    memory is resident already and does not."""
    import torch
    from transformers import AutoModelForCausalLM

    mapped = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    in_memory = AutoModelForCausalLM.from_config(mapped.config)
    size = sum(p.numel() * p.element_size() for p in mapped.parameters())
    assert memory.step_memory(mapped, tokens=64, compute_bytes=4, on_gpu=False).weights == size
    assert memory.step_memory(in_memory, tokens=64, compute_bytes=4, on_gpu=False).weights == 0
    assert memory.step_memory(in_memory, tokens=64, compute_bytes=4, on_gpu=True).weights == size


def test_checkpointing_is_never_estimated_above_training_without_it(tiny):
    """The per-layer extra of a checkpointed layer is a constant: on a tiny model it would make
    checkpointing look dearer than keeping every activation."""
    from transformers import AutoModelForCausalLM

    need = memory.step_memory(AutoModelForCausalLM.from_pretrained(tiny), tokens=64, compute_bytes=4, on_gpu=False)
    assert need.total(checkpointing=True) <= need.total()
