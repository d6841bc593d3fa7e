"""Which floating-point format a model runs in: `precision = auto | bf16 | fp32`.

    chosen = choose("auto")      # Precision(name="bf16", why="this CPU computes bf16 natively (amx_bf16)")

One rule for the local teacher, `orcac train` and `orcac eval`:
- `fp32`: always fp32.
- `bf16`: bf16; on a GPU without bf16 that is an error, on a CPU without native bf16 it runs
  (emulated, several times slower than fp32) and says so.
- `auto`: bf16 on a GPU that supports it and on a CPU that computes bf16 natively (AVX-512 BF16
  or AMX; measured there at 2-3.5x fp32 for generation and training, BENCHMARKS.md), else fp32.
  On a CPU with only AVX2, bf16 matmuls are emulated and measured 5x *slower* than fp32.

The CPU probe reads the kernel's flags (/proc/cpuinfo), not torch's dispatch level: torch reports
"AVX512" for chips with and without the BF16 extension alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from orcac.errors import OrcacError

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16" or "fp32"
    why: str  # one clause for the user, e.g. "auto: this CPU has no native bf16 (avx2)"

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def dtype(self):
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32

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


def choose(precision: str, *, cuda: bool | None = None) -> Precision:
    """The precision to run in for a plan's `precision` setting, on this machine."""
    import torch

    if cuda is None:
        cuda = torch.cuda.is_available()
    if precision == "fp32":
        return Precision("fp32", "as the plan says")
    if cuda:
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise OrcacError(
                f"precision = bf16, but {torch.cuda.get_device_name(0)} does not support bf16",
                hint="set precision = auto (or fp32) in the plan's train block",
            )
        if supported:
            return Precision("bf16", "as the plan says" if precision == "bf16" else "auto: the GPU supports bf16")
        return Precision("fp32", "auto: the GPU has no bf16")
    flag = cpu_bf16_flag()
    if precision == "bf16":
        return Precision("bf16", "as the plan says" + ("" if flag else f"; this CPU has no native bf16 ({_cpu_level()}), so it is emulated and slow"))
    if flag:
        return Precision("bf16", f"auto: this CPU computes bf16 natively ({flag})")
    return Precision("fp32", f"auto: this CPU has no native bf16 ({_cpu_level()})")
