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


@pytest.fixture
def old_gpu(monkeypatch):
    """A GPU without bf16 (the probe faked, as above)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Old GPU")


@pytest.mark.parametrize(
    "asker, where",
    [
        ("teacher smol", "in teacher smol"),
        ("train", "in the plan's train block"),
        ("eval", "in the plan's train block (eval runs the student in train's precision)"),
    ],
)
def test_the_refusal_names_the_block_that_asked(old_gpu, asker, where):
    with pytest.raises(OrcacError) as refused:
        precision.choose("bf16", asker)
    assert str(refused.value).startswith(f"{asker}: precision = bf16, but Old GPU does not support bf16")
    assert refused.value.hint == f"set precision = auto (or fp32) {where}"


def test_a_local_teacher_refused_bf16_is_named_in_the_hint_not_the_train_block(old_gpu):
    """The local teacher chooses before it loads anything: the refusal names it."""
    from orcac.runtime.teachers import local_model

    settings = local_model.LocalSettings(model="never-loaded", precision="bf16", asker="teacher smol")
    with pytest.raises(OrcacError) as refused:
        local_model.load(settings)
    assert "teacher smol" in refused.value.hint and "train" not in refused.value.hint


def test_a_student_runs_bf16_over_fp32_weights_and_a_teacher_in_cast_weights(cpu):
    """One choice, applied one way per kind of model: train and eval autocast over fp32 weights
    (the same arithmetic in both), a local teacher holds its weights in bf16."""
    import torch

    cpu("avx512_bf16")
    for asker in ("train", "eval"):
        student = precision.choose("auto", asker, cuda=False)
        assert (student.name, student.weights, student.dtype()) == ("bf16", torch.float32, torch.bfloat16)
    teacher = precision.choose("auto", "teacher smol", cuda=False)
    assert (teacher.weights, teacher.dtype()) == (torch.bfloat16, torch.bfloat16)

    layer = student.place(torch.nn.Linear(4, 4))
    assert layer.weight.dtype == torch.float32
    with student.running("cpu"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16  # the matmul in bf16, the weights kept
    assert teacher.place(torch.nn.Linear(4, 4)).weight.dtype == torch.bfloat16
    with teacher.running("cpu"):
        assert teacher.place(torch.nn.Linear(4, 4))(torch.ones(1, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
    fp32 = precision.choose("fp32", "eval", cuda=False)
    with fp32.running("cpu"):
        assert fp32.place(torch.nn.Linear(4, 4))(torch.ones(1, 4)).dtype == torch.float32


def test_a_local_teacher_on_a_gpu_machine_is_placed_on_the_gpu_in_the_gpus_precision(monkeypatch, tiny):
    """The bf16 that a GPU allows is run on that GPU: left on the CPU (as it once was), the
    teacher ran bf16 there, emulated on AVX2. The GPU is faked (this machine has none), so the
    placement is recorded instead of done."""
    import torch

    from orcac.runtime.teachers import local_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.device() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.device() == "cuda"
    placed = []
    monkeypatch.setattr(
        precision.Precision, "place", lambda self, model, device=None: placed.append((self.name, device)) or model
    )
    monkeypatch.setattr(local_model, "_models", {})
    local_model.load(local_model.LocalSettings(model=str(tiny), asker="teacher smol"))
    assert placed == [("bf16", "cuda")]
