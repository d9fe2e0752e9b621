"""Tokenization cache: tokenized train/eval sets stored under a key that changes whenever anything
that shapes the ids changes (data content, sampling and mapping, tokenizer, template, max_length,
tuneforge version). An unchanged re-run loads them instead of tokenizing again.

Location: $TUNEFORGE_CACHE, else ~/.cache/tuneforge/tokenized.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
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

from tuneforge import __version__
from tuneforge.config.schema import DataConfig
from tuneforge.data.tokenize import TokenizeStats

CACHE_FORMAT = 4  # bump when encode.py, tokenize.py or a track change what they produce


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
    key: str, stats_type: type = TokenizeStats
) -> tuple[Dataset, Dataset | None, Any, Any | None] | None:
    """The entry stored under `key`, its statistics rebuilt as the track's `stats_type`; None if absent."""
    folder = cache_root() / key
    if not (folder / "complete").is_file():
        return None
    stats = json.loads((folder / "stats.json").read_text())
    eval_set = load_from_disk(str(folder / "eval")) if (folder / "eval").is_dir() else None
    eval_stats = stats_type(**stats["eval"]) if stats["eval"] else None
    return load_from_disk(str(folder / "train")), eval_set, stats_type(**stats["train"]), eval_stats


def store(key: str, train: Dataset, eval_set: Dataset | None, train_stats, eval_stats) -> None:
    """Written beside the entry, then renamed into place: processes that tokenize the same data at once
    (several training processes on one machine, or machines sharing a home folder) never see or delete
    each other's half-written entry; the first complete one stays."""
    folder = cache_root() / key
    staging = cache_root() / f".{key}.{socket.gethostname()}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
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
    (staging / "complete").write_text("")
    if not (folder / "complete").is_file():
        shutil.rmtree(folder, ignore_errors=True)  # an entry a killed process left half-written
        try:
            staging.rename(folder)
            return
        except OSError:  # another process renamed its copy first
            pass
    shutil.rmtree(staging, ignore_errors=True)
