"""Data stage: config section `data` -> tokenized train/eval sets with labels, plus what happened to the rows.

load rows -> detect shape -> check columns -> install the prompt template -> ids and labels
(or the tokenization cache) -> preflight checks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge import token_cache
from tuneforge.config import DataConfig
from tuneforge.data_mix import load_mix
from tuneforge.data_sources import RawData, load_raw_data
from tuneforge.formatting import check_columns, detect_format, row_formatter
from tuneforge.manifest import sha256
from tuneforge.preflight import CheckResult, run_preflight
from tuneforge.templates import install_chat_template
from tuneforge.tokenization import Encoder, TokenizeStats, tokenize_rows


@dataclass
class PreparedData:
    train: Dataset
    eval: Dataset | None
    train_stats: TokenizeStats
    eval_stats: TokenizeStats | None
    format: str
    template_source: str
    file_hashes: dict[Path, str]  # sha256 of every local file read, for the cache key and the manifest
    preflight: list[CheckResult] = field(default_factory=list)
    cache_hit: bool = False


def prepare_data(data: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int) -> PreparedData:
    raw, fmt, view = load_rows(data)
    template_source = install_chat_template(tokenizer, data.template)
    file_hashes = {path: sha256(path) for path in raw.files}
    key = token_cache.cache_key(
        data,
        fmt=fmt,
        file_hashes=list(file_hashes.values()),
        datasets_fingerprints=[d._fingerprint for d in (raw.train, raw.eval) if d is not None],
        tokenizer=tokenizer,
        max_length=max_length,
    )
    cached = token_cache.load(key) if data.cache else None
    train, eval_set, train_stats, eval_stats = cached or tokenize_all(
        raw, fmt, view, tokenizer, max_length, data
    )
    if data.cache and cached is None:
        token_cache.store(key, train, eval_set, train_stats, eval_stats)
    checks = run_preflight(
        data.preflight,
        train=train,
        eval_set=eval_set,
        stats=train_stats,
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        max_length=max_length,
        has_prompts=fmt != "text",
    )
    return PreparedData(
        train,
        eval_set,
        train_stats,
        eval_stats,
        fmt,
        template_source,
        file_hashes,
        checks,
        cached is not None,
    )


def load_rows(data: DataConfig) -> tuple[RawData, str, DataConfig]:
    """Rows, their shape, and the data section the formatter should read them with."""
    if data.mix:
        raw, column = load_mix(data)
        return raw, column, DataConfig(path="data.mix", format=column, train_on=data.train_on)
    raw = load_raw_data(
        data.path,
        hub_config=data.hub_config,
        split=data.split,
        eval_path=data.eval_path,
        eval_fraction=data.eval_fraction,
        max_samples=data.max_samples,
        seed=data.seed,
        dedupe=data.dedupe,
    )
    fmt = detect_format(raw.train.column_names, data)
    check_columns(raw.train.column_names, fmt, data, source=data.path)
    if raw.eval is not None and data.eval_path:
        check_columns(raw.eval.column_names, fmt, data, source=data.eval_path)
    return raw, fmt, data


def tokenize_all(raw: RawData, fmt: str, view: DataConfig, tokenizer, max_length: int, data: DataConfig):
    encoder = Encoder(tokenizer)
    to_input = row_formatter(fmt, view)
    options = {
        "max_length": max_length,
        "train_on": data.train_on,
        "too_long": data.too_long,
        "min_tokens": data.min_tokens,
    }
    train, train_stats = tokenize_rows(raw.train, to_input, encoder, source=view.path, **options)
    if raw.eval is None:
        return train, None, train_stats, None
    eval_set, eval_stats = tokenize_rows(raw.eval, to_input, encoder, source="eval split", **options)
    return train, eval_set, train_stats, eval_stats
