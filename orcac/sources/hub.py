"""Datasets on the Hugging Face Hub: `hf("org/name", config = "...", split = "...", revision = "...")`.

A Hub source is pinned as a local file is: `orcac plan` resolves the revision (a branch, a tag,
or none: the default branch) to its 40-hex commit and records it with the sha256 of the data
files it read, so the plan is the lock; `orcac build` reads those files at that commit and
refuses when the revision has moved since (as it refuses a local file that changed).

Files come into the ordinary Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`) through
`huggingface_hub.hf_hub_download`, only those of the chosen config and split (and README.md,
whose YAML `configs:` say which files those are). Where the Hub cannot be reached
(`HF_HUB_OFFLINE=1`, or no network) the cache is read by its folder layout
(`datasets--org--name/refs/<revision>`, `snapshots/<commit>/<file>`) without importing
huggingface_hub, which is all that `orcac check` ever does (it never uses the network).

A gated or private dataset's token is read from the `HF_TOKEN` environment variable only, never
from a login stored on the machine, and never written anywhere.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orcac.sources.problems import SourceError
from orcac.specs.diagnostics import did_you_mean

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
TOKEN_ENV = "HF_TOKEN"

# A file's split from its name, as the Hub's data-files convention reads it; anything else is train.
SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
    "eval": "test",
    "evaluation": "test",
}


@dataclass(frozen=True)
class HubData:
    """A config and split of a Hub dataset at one commit: the repo's file names and where the
    cache holds them."""

    repo: str
    config: str | None  # as the spec wrote it (None: the dataset's only or default config)
    split: str | None
    revision: str | None  # as the spec wrote it (None: the default branch)
    commit: str
    names: tuple[str, ...]  # repo-relative, sorted: the files read, in order
    files: tuple[Path, ...]  # the same files in the cache


def is_hub(path: str, base: Path, *, config: str | None, revision: str | None) -> bool:
    """hf("org/name") names a Hub dataset unless a folder by that name is here (save_to_disk)."""
    if config is not None or revision is not None:
        return True
    return HUB_ID.match(path) is not None and not (base / path).exists()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def _token() -> str | bool:
    # False, not None: huggingface_hub would otherwise fall back to a login saved on the machine
    return os.environ.get(TOKEN_ENV) or False


def cache_dir() -> Path:
    """The Hugging Face hub cache, by huggingface_hub's own rules (without importing it)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _shown(repo: str, revision: str | None) -> str:
    return f"{repo}@{revision}" if revision else repo


def _download_hint(repo: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (
        f"with network access, run `orcac plan` (it downloads the files), or `hf download {repo} --repo-type dataset{rev}` "
        f"(a folder saved with save_to_disk at {repo} would be read instead)"
    )


# ---- which files are a config's split -----------------------------------------------------------


def _front_matter(readme: Path | None) -> dict:
    if readme is None or not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    import yaml

    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _split_of(name: str) -> str:
    word = re.split(r"[-_.]", PurePosixPath(name).name, maxsplit=1)[0].lower()
    return SPLIT_WORDS.get(word, "train")


def _layout(names: tuple[str, ...], card: dict) -> dict[str, dict[str, list[str]]]:
    """{config: {split: [file patterns]}}: the README's `configs:` where it has them, else the
    Hub's conventions (`{config}/{split}-*.parquet`, `data/{split}-*`, `{split}.jsonl`, ...)."""
    layout: dict[str, dict[str, list[str]]] = {}
    configs = card.get("configs")
    if isinstance(configs, list):
        for c in configs:
            if not isinstance(c, dict) or "config_name" not in c:
                continue
            files = c.get("data_files")
            splits: dict[str, list[str]] = {}
            if isinstance(files, (str, list)) and not (
                isinstance(files, list) and files and isinstance(files[0], dict)
            ):
                splits["train"] = [files] if isinstance(files, str) else list(files)
            elif isinstance(files, dict):  # {split: pattern(s)}
                splits = {str(k): [v] if isinstance(v, str) else list(v) for k, v in files.items()}
            elif isinstance(files, list):
                for entry in files:
                    paths = entry.get("path", [])
                    splits[str(entry.get("split", "train"))] = [paths] if isinstance(paths, str) else list(paths)
            layout[str(c["config_name"])] = splits
        if layout:
            return layout
    for name in names:
        if not name.endswith(DATA_SUFFIXES):
            continue
        parts = name.split("/")
        if len(parts) == 1 or parts[0] == "data":  # train.jsonl, data/train-0000.parquet, data/train/0.parquet
            config, split = "default", _split_of(parts[-1] if len(parts) < 3 else parts[1])
        else:  # main/train-0000.parquet, main/train/0000.parquet (the Hub's parquet conversion)
            config, split = parts[0], _split_of(parts[1])
        layout.setdefault(config, {}).setdefault(split, []).append(name)
    return layout


def _default_config(card: dict, layout: dict) -> str | None:
    for c in card.get("configs") or ():
        if isinstance(c, dict) and c.get("default"):
            return str(c.get("config_name"))
    if len(layout) == 1:
        return next(iter(layout))
    return "default" if "default" in layout else None


def pick(
    repo: str,
    names: tuple[str, ...],
    card: dict,
    config: str | None,
    split: str | None,
    *,
    none_ok: bool = False,
) -> tuple[str, ...]:
    """The repo's file names that hold `config`'s `split`, sorted. SourceError (with "did you
    mean") for a config or split the dataset does not have; `none_ok`: () where no file matches."""
    layout = _layout(names, card)
    if not layout:
        raise SourceError(f"hf dataset {repo} holds no data files orcac reads (parquet, jsonl, json or csv)")
    chosen = config if config is not None else _default_config(card, layout)
    if chosen is None:
        raise SourceError(
            f"{repo} has configs {', '.join(sorted(layout))}: choose one", 'write hf("..", config = "...")'
        )
    if chosen not in layout:
        hint = did_you_mean(chosen, layout) or f"it has: {', '.join(sorted(layout))}"
        raise SourceError(f"{repo} has no config '{chosen}'", hint)
    splits = layout[chosen]
    if split is None:
        if len(splits) != 1:
            raise SourceError(
                f"{repo} ({chosen}) has splits {', '.join(sorted(splits))}: choose one", 'write hf("..", split = "...")'
            )
        split = next(iter(splits))
    if split not in splits:
        hint = did_you_mean(split, splits) or f"it has: {', '.join(sorted(splits))}"
        raise SourceError(f"{repo} ({chosen}) has no split '{split}'", hint)
    patterns = splits[split]
    picked = tuple(
        sorted(n for n in names if n.endswith(DATA_SUFFIXES) and any(fnmatch.fnmatchcase(n, p) for p in patterns))
    )
    if not picked and not none_ok:
        raise SourceError(f"{repo} ({chosen}, {split}): no file matches {', '.join(patterns)}")
    return picked


# ---- the cache, read by its layout ----------------------------------------------------------------


def cached(
    repo: str, config: str | None, split: str | None, revision: str | None, *, commit: str | None = None
) -> HubData | None:
    """The dataset as the local cache holds it (at `commit`, or where `revision` pointed when it
    was last fetched), or None when the cache does not have it."""
    folder = cache_dir() / ("datasets--" + repo.replace("/", "--"))
    if commit is None:
        if revision is not None and COMMIT.match(revision):
            commit = revision
        else:
            ref = folder / "refs" / (revision or "main")
            if not ref.is_file():
                return None
            commit = ref.read_text().strip()
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    names = tuple(sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()))
    card = _front_matter(snapshot / "README.md")
    try:  # the cache holds only the splits read so far: only a README's list of configs is the whole list
        picked = pick(repo, names, card, config, split, none_ok=True)
    except SourceError:
        if card.get("configs"):
            raise
        return None
    if not picked:
        return None
    return HubData(repo, config, split, revision, commit, picked, tuple(snapshot / n for n in picked))


# ---- the Hub --------------------------------------------------------------------------------------


def fetch(
    repo: str, config: str | None, split: str | None, revision: str | None, *, commit: str | None = None
) -> HubData:
    """Resolve `revision` on the Hub and download the config's split into the cache; offline,
    read the cache. With `commit` (a plan's pin), refuse when the revision now points elsewhere."""
    if not offline():
        online = _fetch_online(repo, config, split, revision, commit)
        if online is not None:
            return online
    found = cached(repo, config, split, revision, commit=commit)
    if found is None:
        where = f"at commit {commit[:12]}" if commit else f"(revision {revision or 'main'})"
        raise SourceError(
            f"hf dataset {repo} {where} is not in the Hugging Face cache ({cache_dir()}) and the Hub is offline",
            _download_hint(repo, revision),
        )
    return found


def _fetch_online(repo, config, split, revision, pinned) -> HubData | None:
    """None when the Hub cannot be reached (the caller falls back to the cache)."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = _token()
    try:
        info = HfApi(token=token).dataset_info(repo, revision=revision, files_metadata=False)
        commit = info.sha
        if pinned is not None and commit != pinned:
            raise SourceError(
                f"hf dataset {repo}: revision {revision or 'main'} moved from {pinned[:12]} to {commit[:12]} since the plan was made",
                'run `orcac plan` to read the new data (or pin revision = "<commit>" in the spec)',
            )
        names = tuple(sorted(s.rfilename for s in info.siblings or ()))

        def download(name: str) -> Path:
            return Path(hf_hub_download(repo, name, repo_type="dataset", revision=commit, token=token))

        card = _front_matter(download("README.md")) if "README.md" in names else {}
        picked = pick(repo, names, card, config, split)
        files = tuple(download(n) for n in picked)
        _remember_ref(repo, revision, commit)
        return HubData(repo, config, split, revision, commit, picked, files)
    except GatedRepoError:
        had = f" with the token in {TOKEN_ENV}" if token else ""
        raise SourceError(
            f"hf dataset {repo} is gated: access was refused{had}",
            f"accept its terms on the Hub, then set {TOKEN_ENV} to a token of that account",
        ) from None
    except RepositoryNotFoundError:
        raise SourceError(
            f"no dataset {repo} on the Hub (or it is private, and {TOKEN_ENV} is {'not one with access' if token else 'not set'})",
            f"check the name; for a private dataset set {TOKEN_ENV} (a folder saved with save_to_disk at {repo} would be read instead)",
        ) from None
    except RevisionNotFoundError:
        raise SourceError(
            f"hf dataset {repo} has no revision '{revision}'", "name a branch, a tag or a commit of the dataset"
        ) from None
    except EntryNotFoundError as error:
        raise SourceError(f"hf dataset {_shown(repo, revision)}: a file is missing: {error}") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        if status in (401, 403):
            raise SourceError(
                f"hf dataset {repo}: access refused (HTTP {status})", f"set {TOKEN_ENV} to a token with access"
            ) from None
        raise SourceError(f"hf dataset {repo}: the Hub answered HTTP {status}") from None
    except Exception as error:
        if _unreachable(error):
            return None
        raise


# What the HTTP client raises where the Hub cannot be reached (by name: huggingface_hub's client
# library has changed before, httpx, httpx2, requests), and huggingface_hub's own offline error.
UNREACHABLE = ("TransportError", "ConnectionError", "Timeout", "TimeoutException", "OfflineModeIsEnabled")


def _unreachable(error: Exception) -> bool:
    return any(c.__name__ in UNREACHABLE for c in type(error).__mro__)


def _remember_ref(repo: str, revision: str | None, commit: str) -> None:
    """Record where a branch or tag pointed, as huggingface_hub does for the files it downloads
    by revision (we download by commit), so that offline reads of the revision find it."""
    if revision is not None and COMMIT.match(revision):
        return
    ref = cache_dir() / ("datasets--" + repo.replace("/", "--")) / "refs" / (revision or "main")
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not ref.is_file() or ref.read_text().strip() != commit:
            tmp = ref.with_name(ref.name + f".{os.getpid()}.tmp")
            tmp.write_text(commit)
            os.replace(tmp, ref)
    except OSError:
        pass  # a read-only cache: offline reads then need the commit, which the plan has
