"""Which floating-point format a model runs in, `precision = auto | bf16 | fp32`, and how it is applied.

    chosen = choose("auto", "teacher smol")   # Precision(name="bf16", why="auto: this CPU computes bf16 natively (amx_bf16)")
    model = chosen.place(model, device())    # weights in `chosen.weights`, on the GPU if there is one
    with chosen.running(device()):           # the arithmetic: bf16 autocast for a student, nothing more for a teacher
        ...

One rule for the local teacher, `orcac train` and `orcac eval`, chosen once per model here:
- `fp32`: always fp32.
- `bf16`: bf16; on a GPU without bf16 that is an error (its hint names the block that asked,
  where the setting is to change), on a CPU without native bf16 it runs (emulated, several
  times slower than fp32) and says so.
- `auto`: bf16 on a GPU that supports it and on a CPU that computes bf16 natively (AVX-512 BF16
  or AMX; measured there at 2-3.5x fp32 for generation and training, BENCHMARKS.md), else fp32.
  On a CPU with only AVX2, bf16 matmuls are emulated and measured 5x *slower* than fp32.

Applied one way per kind of model, which `choose` decides from the block that asked:
- the student (`train`, and `eval`'s base and trained arms): fp32 weights, bf16 matmuls under
  autocast. Training needs fp32 master weights (an update smaller than bf16's step between two
  weights would be lost), and eval runs the student the same way so that the arms are scored
  in the arithmetic the training loss was measured in: casting the trained weights to bf16
  would round away what the last updates changed, and the base arm must match the trained one
  for the gap between them to be the training's. Eval has no precision of its own: it reads
  the train block's (docs/language.md).
- a local teacher (`teacher NAME`): the weights cast to bf16. It only generates, never learns,
  so nothing needs fp32 weights, and half the memory is what lets a larger teacher fit.

The CPU probe reads the kernel's flags (/proc/cpuinfo), not torch's dispatch level: torch reports
"AVX512" for chips with and without the BF16 extension alike.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from orcac.errors import OrcacError

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


STUDENT_BLOCKS = ("train", "eval")  # the blocks that run the student: autocast over fp32 weights


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16" or "fp32"
    why: str  # one clause for the user, e.g. "auto: this CPU has no native bf16 (avx2)"
    autocast: bool = False  # compute in `name` over fp32 weights (the student); else the weights are cast

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def dtype(self):
        """The dtype the matmuls run in."""
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def weights(self):
        """The dtype the weights are held in: fp32 under autocast, else the compute dtype."""
        import torch

        return torch.float32 if self.autocast else self.dtype()

    def place(self, model, device=None):
        """The model on `device` with its weights in `weights` (a GGUF file always loads in fp32)."""
        return model.to(device=device, dtype=self.weights)

    def running(self, device=None):
        """The context the model's forward passes run in: bf16 autocast for a bf16 student, else none."""
        if not (self.autocast and self.bf16):
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=torch.device(device or "cpu").type, dtype=torch.bfloat16)

    def __str__(self) -> str:
        return f"{self.name} ({self.why})"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them; empty where there is no /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_flag() -> str | None:
    """The flag that says this CPU computes bf16 natively, or None."""
    flags = cpu_flags()
    return next((f for f in NATIVE_BF16_FLAGS if f in flags), None)


def _cpu_level() -> str:
    flags = cpu_flags()
    for flag in ("avx512f", "avx2", "avx"):
        if flag in flags:
            return flag
    return "no AVX"


def device() -> str:
    """Where a model runs: the GPU when torch sees one, else the CPU. One answer for the local
    teacher, eval's arms and its benchmarks, as `choose` decides bf16 on the same test: a teacher
    left on the CPU of a GPU machine would run the GPU's bf16 there, emulated on AVX2."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose(precision: str, asker: str | None = None, *, cuda: bool | None = None) -> Precision:
    """The precision to run in for a plan's `precision` setting, on this machine, for the block
    that asked: "train", "eval" (which runs the student under train's setting) or "teacher NAME"."""
    import torch

    if cuda is None:
        cuda = device() == "cuda"
    autocast = asker in STUDENT_BLOCKS
    if precision == "fp32":
        return Precision("fp32", "as the plan says", autocast)
    if cuda:
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise OrcacError(
                (f"{asker}: " if asker else "")
                + f"precision = bf16, but {torch.cuda.get_device_name(0)} does not support bf16",
                hint=f"set precision = auto (or fp32) {_where_set(asker)}",
            )
        if supported:
            return Precision(
                "bf16", "as the plan says" if precision == "bf16" else "auto: the GPU supports bf16", autocast
            )
        return Precision("fp32", "auto: the GPU has no bf16", autocast)
    flag = cpu_bf16_flag()
    if precision == "bf16":
        return Precision(
            "bf16",
            "as the plan says"
            + ("" if flag else f"; this CPU has no native bf16 ({_cpu_level()}), so it is emulated and slow"),
            autocast,
        )
    if flag:
        return Precision("bf16", f"auto: this CPU computes bf16 natively ({flag})", autocast)
    return Precision("fp32", f"auto: this CPU has no native bf16 ({_cpu_level()})", autocast)


def _where_set(asker: str | None) -> str:
    """Where the plan sets the precision `asker` runs in.

    >>> _where_set("teacher smol"), _where_set("eval")
    ('in teacher smol', "in the plan's train block (eval runs the student in train's precision)")
    """
    if asker is None:
        return "where the plan sets it"
    if asker == "eval":
        return "in the plan's train block (eval runs the student in train's precision)"
    if asker == "train":
        return "in the plan's train block"
    return f"in {asker}"
