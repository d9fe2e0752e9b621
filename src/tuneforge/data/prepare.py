"""Data stage entry point: config section `data` -> tokenized train/eval sets with labels, plus what happened.

load rows -> detect shape -> check columns -> install the prompt template -> encode and check every sample
(or reuse the tokenization cache) -> resolve max_length -> preflight checks

    data = prepare_data(config.data, tokenizer, max_length=None, context_length=2048)   # None: auto
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data import cache
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.mix import load_mix
from tuneforge.data.preflight import CheckResult, run_preflight
from tuneforge.data.shapes import check_columns, detect_format, row_formatter
from tuneforge.data.sources import RawData, load_data_rows, sha256
from tuneforge.data.templates import install_chat_template
from tuneforge.data.tokenize import TokenizeStats, tokenize_rows


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
    # The held-out rows as conversations (or documents): saved with the run, so evaluation scores exactly them.
    eval_items: list = field(default_factory=list)

    @property
    def max_length(self) -> int:
        return self.train_stats.max_length


def prepare_data(
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None,
    context_length: int | None = None,
) -> PreparedData:
    """`max_length=None` resolves train.max_length: auto from the training samples' lengths."""
    raw, fmt, view = load_rows(data)
    template_source = install_chat_template(tokenizer, data.template)
    file_hashes = {path: sha256(path) for path in raw.files}
    key = cache.cache_key(
        data,
        fmt=fmt,
        file_hashes=list(file_hashes.values()),
        datasets_fingerprints=[d._fingerprint for d in (raw.train, raw.eval) if d is not None],
        tokenizer=tokenizer,
        max_length=max_length,
        context_length=context_length,
    )
    cached = cache.load(key) if data.cache else None
    train, eval_set, train_stats, eval_stats = cached or tokenize_all(
        raw, fmt, view, ChatEncoder(tokenizer), data, max_length, context_length
    )
    if data.cache and cached is None:
        cache.store(key, train, eval_set, train_stats, eval_stats)
    checks = run_preflight(
        data.preflight,
        train=train,
        eval_set=eval_set,
        stats=train_stats,
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        has_prompts=fmt != "text",
        separate_eval_file=bool(data.eval_path),
    )
    to_input = row_formatter(fmt, view)
    eval_items = [to_input(row) for row in raw.eval] if raw.eval is not None else []
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
        eval_items,
    )


def load_rows(data: DataConfig) -> tuple[RawData, str, DataConfig]:
    """Rows, their shape, and the data section the formatter should read them with."""
    if data.mix:
        raw, column = load_mix(data)
        return raw, column, DataConfig(path="data.mix", format=column, train_on=data.train_on)
    raw = load_data_rows(data)
    fmt = detect_format(raw.train.column_names, data)
    check_columns(raw.train.column_names, fmt, data, source=data.path)
    if raw.eval is not None and data.eval_path:
        check_columns(raw.eval.column_names, fmt, data, source=data.eval_path)
    return raw, fmt, data


def tokenize_all(
    raw: RawData,
    fmt: str,
    view: DataConfig,
    encoder: ChatEncoder,
    data: DataConfig,
    max_length: int | None,
    context_length: int | None,
):
    to_input = row_formatter(fmt, view)
    options = {
        "context_length": context_length,
        "train_on": data.train_on,
        "too_long": data.too_long,
        "min_tokens": data.min_tokens,
    }
    train, train_stats = tokenize_rows(
        raw.train,
        to_input,
        encoder,
        max_length=max_length,
        source=view.path,
        numbers=raw.numbers("train"),
        **options,
    )
    if raw.eval is None:
        return train, None, train_stats, None
    # The held-out split is cut where the training split is, so its loss measures the same task.
    eval_source = data.eval_path or (view.path if raw.eval_numbers is not None else "eval split")
    eval_set, eval_stats = tokenize_rows(
        raw.eval,
        to_input,
        encoder,
        max_length=train_stats.max_length,
        source=eval_source,
        numbers=raw.numbers("eval"),
        **options,
    )
    return train, eval_set, train_stats, eval_stats
