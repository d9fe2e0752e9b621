"""Tokenization cache: tokenized train/eval sets stored under a key that changes whenever anything
that shapes the ids changes (data content, sampling and mapping, tokenizer, template, max_length,
tuneforge version). An unchanged re-run loads them instead of tokenizing again.

The cache only saves time, so it never stops a run: an entry is checked against the sizes and checksums
stored with it before it is used, and a damaged one is named, deleted and rebuilt; an entry that cannot
be written (a full disk, a read-only folder) is a notice, and the run goes on without it.

Location: $TUNEFORGE_CACHE, else ~/.cache/tuneforge/tokenized.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datasets import (
    Dataset,
    disable_progress_bars,
    enable_progress_bars,
    is_progress_bar_enabled,
    load_from_disk,
)
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data.sources import sha256
from tuneforge.errors import DISK_FULL, free_space, megabytes
from tuneforge.version import __version__

CACHE_FORMAT = 5  # bump when encode.py, tokenize.py, a track or the entry's layout change what is stored
CHECKLIST = "files.json"  # every file of an entry with its size and sha256, checked before it is used


def cache_root() -> Path:
    return Path(os.environ.get("TUNEFORGE_CACHE", Path.home() / ".cache" / "tuneforge" / "tokenized"))


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = (
        backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    )
    parts = [
        type(tokenizer).__name__,
        vocabulary,
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def cache_key(
    data: DataConfig,
    *,
    fmt: str,
    file_hashes: list[str],
    datasets_fingerprints: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None,
    context_length: int | None,
) -> str:
    material = {
        "format_version": CACHE_FORMAT,
        "tuneforge": __version__,
        "mapping": data.model_dump(mode="json", exclude={"preflight", "cache"}),
        "shape": fmt,
        "files": file_hashes,
        # hub data has no local file to hash: datasets' own fingerprint of what it loaded stands in
        "datasets": datasets_fingerprints if not file_hashes else [],
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "template": tokenizer.chat_template,
        "max_length": max_length,  # None: auto, resolved from the data and the context length
        "context_length": context_length,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def load(
    key: str, stats_type: type, notice: Callable[[str], None]
) -> tuple[Dataset, Dataset | None, Any, Any | None] | None:
    """The entry stored under `key`, its statistics rebuilt as the track's `stats_type`; None if absent,
    or if it is damaged: then it is named through `notice` and deleted, and the caller tokenizes again."""
    folder = cache_root() / key
    if not os.path.lexists(folder):
        return None
    try:
        problem = damage(folder)
        if problem is None:
            return read_entry(folder, stats_type)
    except Exception as exc:  # the cache only saves time: whatever is wrong with an entry, tokenize again
        problem = f"{type(exc).__name__}: {exc}"
    notice(f"tokenization cache entry {folder} is damaged ({problem}); rebuilding it")
    shutil.rmtree(folder, ignore_errors=True)
    return None


def damage(folder: Path) -> str | None:
    """What differs from the checklist written with the entry; None when every file is as stored."""
    try:
        listed = json.loads((folder / CHECKLIST).read_text())
    except FileNotFoundError:
        return f"{CHECKLIST} is missing"
    except ValueError:
        return f"{CHECKLIST} is not valid JSON"
    for name, (size, digest) in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is {path.stat().st_size} bytes, {size} when stored"
        if sha256(path) != digest:
            return f"{name} does not match its checksum"
    return None


def read_entry(folder: Path, stats_type: type) -> tuple[Dataset, Dataset | None, Any, Any | None]:
    stats = json.loads((folder / "stats.json").read_text())
    eval_set = load_from_disk(str(folder / "eval")) if (folder / "eval").is_dir() else None
    eval_stats = stats_type(**stats["eval"]) if stats["eval"] else None
    return load_from_disk(str(folder / "train")), eval_set, stats_type(**stats["train"]), eval_stats


def store(key: str, encoded: tuple, notice: Callable[[str], None]) -> None:
    """Written beside the entry, then renamed into place: processes that tokenize the same data at once
    (several training processes on one machine, or machines sharing a home folder) never see or delete
    each other's half-written entry; the first complete one stays. A full disk or a folder that cannot be
    written is a notice: the run goes on without the cache."""
    folder = cache_root() / key
    staging = cache_root() / f".{key}.{socket.gethostname()}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_entry(staging, *encoded)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        notice(not_stored(exc))
        return
    if not (folder / CHECKLIST).is_file():
        shutil.rmtree(folder, ignore_errors=True)  # what is left of a damaged entry
        try:
            staging.rename(folder)
            return
        except OSError:  # another process renamed its copy first
            pass
    shutil.rmtree(staging, ignore_errors=True)


def write_entry(staging: Path, train: Dataset, eval_set: Dataset | None, train_stats, eval_stats) -> None:
    shown = is_progress_bar_enabled()
    disable_progress_bars()  # a bar per split for a second's work is noise in the run's output
    try:
        train.save_to_disk(str(staging / "train"))
        if eval_set is not None:
            eval_set.save_to_disk(str(staging / "eval"))
    finally:
        if shown:
            enable_progress_bars()
    stats = {"train": asdict(train_stats), "eval": asdict(eval_stats) if eval_stats else None}
    (staging / "stats.json").write_text(json.dumps(stats))
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    listed = {str(p.relative_to(staging)): [p.stat().st_size, sha256(p)] for p in files}
    (staging / CHECKLIST).write_text(json.dumps(listed, indent=1))  # last: its presence marks a whole entry


def not_stored(exc: OSError) -> str:
    """The notice for an entry that could not be written, and what lets the next run store it."""
    reason = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    if exc.errno in DISK_FULL:
        free = megabytes(free_space(cache_root()))
        advice = f"{free} free at {cache_root()}: free space there, or set TUNEFORGE_CACHE to another disk"
    else:
        advice = "Set TUNEFORGE_CACHE to a folder you can write, or data.cache: false"
    return f"the tokenization cache was not stored ({reason}); this run goes on without it. {advice}"
