"""`precision = auto | bf16 | fp32`: the choice where bf16 is and is not native (the probe faked, not the math)."""

from __future__ import annotations

import pytest

from orcac.errors import OrcacError
from orcac.runtime.models import precision


@pytest.fixture
def cpu(monkeypatch):
    def with_flags(*flags):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))

    return with_flags


@pytest.mark.parametrize(
    "flags, setting, chosen, why",
    [
        (("avx2", "avx512f", "avx512_bf16"), "auto", "bf16", "natively (avx512_bf16)"),
        (("avx2", "avx512f", "amx_tile", "amx_bf16"), "auto", "bf16", "natively (amx_bf16)"),
        (("avx2",), "auto", "fp32", "no native bf16 (avx2)"),
        (("avx2", "avx512f"), "auto", "fp32", "no native bf16 (avx512f)"),
        (("avx2",), "bf16", "bf16", "emulated and slow"),
        (("avx512_bf16",), "fp32", "fp32", "as the plan says"),
    ],
)
def test_the_cpu_choice(cpu, flags, setting, chosen, why):
    cpu(*flags)
    result = precision.choose(setting, cuda=False)
    assert result.name == chosen and why in result.why
    assert str(result).startswith(chosen)


def test_a_gpu_without_bf16_refuses_bf16_and_auto_keeps_fp32(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Old GPU")
    assert precision.choose("auto", cuda=True).name == "fp32"
    with pytest.raises(OrcacError, match="Old GPU does not support bf16"):
        precision.choose("bf16", cuda=True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.choose("auto", cuda=True).name == "bf16"


def test_this_machine_reads_its_own_flags():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    expected = "bf16" if precision.cpu_bf16_flag() else "fp32"
    import torch

    if not torch.cuda.is_available():
        assert precision.choose("auto").name == expected
