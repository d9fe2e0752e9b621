"""Data stage: config section `data` -> tokenized train/eval sets with labels, plus what happened to the rows.

load rows -> detect shape -> check columns -> install the prompt template -> ids and labels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge.config import DataConfig
from tuneforge.data_sources import load_raw_data
from tuneforge.formatting import check_columns, detect_format, row_formatter
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
    files: list[Path]


def prepare_data(data: DataConfig, tokenizer: PreTrainedTokenizerBase, max_length: int) -> PreparedData:
    raw = load_raw_data(
        data.path,
        hub_config=data.hub_config,
        split=data.split,
        eval_path=data.eval_path,
        eval_fraction=data.eval_fraction,
        max_samples=data.max_samples,
        seed=data.seed,
    )
    fmt = detect_format(raw.train.column_names, data)
    check_columns(raw.train.column_names, fmt, data, source=data.path)
    if raw.eval is not None and data.eval_path:
        check_columns(raw.eval.column_names, fmt, data, source=data.eval_path)
    template_source = install_chat_template(tokenizer, data.template)
    encoder = Encoder(tokenizer)
    to_messages = row_formatter(fmt, data)
    train, train_stats = tokenize_rows(
        raw.train, to_messages, encoder, max_length=max_length, train_on=data.train_on, source=data.path
    )
    eval_set, eval_stats = None, None
    if raw.eval is not None:
        eval_set, eval_stats = tokenize_rows(
            raw.eval, to_messages, encoder, max_length=max_length, train_on=data.train_on, source="eval split"
        )
    return PreparedData(train, eval_set, train_stats, eval_stats, fmt, template_source, raw.files)
