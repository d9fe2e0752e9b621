"""The samples track: one training sample per row, a conversation (messages, sharegpt, alpaca,
prompt/completion) or a plain document (text), trained on its answers (data.train_on) and checked by the
SFT preflight (`data/preflight.py`).

    data = prepare_data(config.data, tokenizer, max_length=None, context_length=2048, track=SAMPLES)
"""

from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.preflight import CheckResult, run_preflight
from tuneforge.data.shapes import check_columns, detect_format, row_formatter
from tuneforge.data.sources import RawData
from tuneforge.data.tokenize import TokenizeStats, tokenize_rows


class SamplesTrack:
    name = "samples"
    stats_type = TokenizeStats

    def shape(self, columns: list[str], data: DataConfig, source: str) -> str:
        fmt = detect_format(columns, data)
        check_columns(columns, fmt, data, source=source)
        return fmt

    def mix_rows(self, rows: Dataset, shape: str, data: DataConfig, source: str) -> tuple[str, list[dict]]:
        column = "text" if shape == "text" else "messages"
        to_input = row_formatter(shape, data)
        return column, [{column: to_input(row, f"{source} row {n}")} for n, row in enumerate(rows)]

    def encode(
        self,
        raw: RawData,
        shape: str,
        data: DataConfig,
        encoder: ChatEncoder,
        max_length: int | None,
        context_length: int | None,
    ):
        to_input = row_formatter(shape, data)
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
            source=data.path,
            numbers=raw.numbers("train"),
            **options,
        )
        if raw.eval is None:
            return train, None, train_stats, None
        # The held-out split is cut where the training split is, so its loss measures the same task.
        eval_source = data.eval_path or (data.path if raw.eval_numbers is not None else "eval split")
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

    def preflight(
        self, data: DataConfig, tokenizer: PreTrainedTokenizerBase, encoded, shape: str
    ) -> list[CheckResult]:
        train, eval_set, train_stats, _ = encoded
        return run_preflight(
            data.preflight,
            train=train,
            eval_set=eval_set,
            stats=train_stats,
            bos_id=tokenizer.bos_token_id,
            eos_id=tokenizer.eos_token_id,
            has_prompts=shape != "text",
            separate_eval_file=bool(data.eval_path),
        )

    def eval_items(self, raw: RawData, shape: str, data: DataConfig) -> list:
        if raw.eval is None:
            return []
        to_input = row_formatter(shape, data)
        source = data.eval_path or data.path
        return [to_input(row, f"{source} row {n}") for n, row in zip(raw.numbers("eval"), raw.eval)]


SAMPLES = SamplesTrack()
