"""The prompts track: rows that hold a prompt and whatever an answer is checked against, for online methods
(train.method grpo) that write their own answers and score them.

A row is read in any conversation shape (prompt/completion, alpaca, messages, sharegpt) by the usual
mapping. Its prompt is the conversation up to its last user turn; a final assistant turn (the completion,
alpaca's output) is not trained on but kept as the row's `reference`, beside every other column of the
row, for the reward functions. The prompt ids come from the one encoder's `prompt_ids`: a rollout is
prompted token for token as `tuneforge generate` prompts.

    data = prepare_data(config.data, tokenizer, max_length=None, context_length=2048, track=PROMPTS)
    data.train[0]  # {"prompt_ids": [...], "prompt": "the last user turn", "row": '{"prompt": ..., "reference": ...}'}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.preflight import CheckResult
from tuneforge.data.shapes import Message, check_messages, detect_format, row_formatter
from tuneforge.data.sources import RawData
from tuneforge.data.tokenize import auto_max_length
from tuneforge.errors import TuneforgeError

REFERENCE = "reference"  # the row key the answer of the row's shape is kept under, for the rewards


@dataclass
class PromptStats:
    source: str = "data"
    rows: int = 0
    with_reference: int = 0
    dropped_long: int = 0
    kept: int = 0
    max_length: int = 0  # the longest prompt kept, in tokens (auto: covers 99% of them, as SFT's)
    context_length: int | None = None
    lengths: list[int] = field(default_factory=list)


def split_prompt(messages: list[Message]) -> tuple[list[Message], str | None]:
    """(the conversation up to its last user turn, the final assistant turn's text or None)."""
    if messages and messages[-1]["role"] == "assistant":  # the row's tools stay with the prompt
        return messages[:-1], messages[-1]["content"] or None
    return messages, None


def prompt_row(row: dict, messages: list[Message], where: str) -> tuple[list[Message], dict]:
    prompt, answer = split_prompt(messages)
    if not prompt or prompt[-1]["role"] != "user":
        raise TuneforgeError(f"{where}: the prompt must end with a user turn (it has {len(prompt)} turns)")
    # the trainable-conversation checks, on the prompt with a placeholder answer
    check_messages([*prompt, {"role": "assistant", "content": ""}], where)
    kept = {key: value for key, value in row.items() if not key.startswith("__tuneforge")}
    if answer is not None and REFERENCE not in kept:
        kept[REFERENCE] = answer
    return prompt, kept


def encode_prompts(
    rows: Dataset,
    numbers: list[int],
    data: DataConfig,
    shape: str,
    encoder: ChatEncoder,
    max_length: int | None,
    context_length: int | None,
    source: str,
) -> tuple[Dataset, PromptStats]:
    to_messages = row_formatter(shape, data)
    stats = PromptStats(source=source, context_length=context_length)
    encoded = []
    for number, row in zip(numbers, rows):
        where = f"{source} row {number}"
        prompt, kept = prompt_row(row, to_messages(row, where), where)
        ids = encoder.prompt_ids(prompt)
        stats.rows += 1
        stats.with_reference += REFERENCE in kept
        row_json = json.dumps(kept, ensure_ascii=False, default=str)
        encoded.append({"prompt_ids": ids, "prompt": prompt[-1]["content"], "row": row_json})
    if not encoded:
        raise TuneforgeError(f"{source}: no rows to take prompts from")
    stats.lengths = [len(item["prompt_ids"]) for item in encoded]
    cut = max_length or auto_max_length(stats.lengths, context_length)
    stats.max_length = cut
    kept_rows = [item for item in encoded if len(item["prompt_ids"]) <= cut]
    stats.dropped_long, stats.kept = len(encoded) - len(kept_rows), len(kept_rows)
    if not kept_rows:
        raise TuneforgeError(
            f"{source}: every prompt is longer than {cut} tokens; raise train.max_length (the longest prompt)"
        )
    return Dataset.from_list(kept_rows), stats


class PromptsTrack:
    name = "prompts"
    stats_type = PromptStats

    def shape(self, columns: list[str], data: DataConfig, source: str) -> str:
        cols = data.columns
        if data.format != "auto":
            return data.format
        if cols.messages in columns or cols.conversations in columns:
            return detect_format(columns, data)
        if cols.instruction in columns:
            return "alpaca"
        if cols.prompt in columns or data.prompt_format:
            return "prompt_completion"
        raise TuneforgeError(
            f"{source}: no prompt column among {', '.join(columns)}: name it with data.columns.prompt (or "
            "data.columns.messages for conversations ending in a user turn)"
        )

    def mix_rows(self, rows: Dataset, shape: str, data: DataConfig, source: str) -> tuple[str, list[dict]]:
        to_messages = row_formatter(shape, data)
        mixed = []
        for number, row in enumerate(rows):
            messages = to_messages(row, f"{source} row {number}")
            mixed.append({data.columns.messages: messages})
        return "messages", mixed

    def encode(self, raw: RawData, shape: str, data: DataConfig, encoder, max_length, context_length):
        train, train_stats = encode_prompts(
            raw.train, raw.numbers("train"), data, shape, encoder, max_length, context_length, str(data.path)
        )
        if raw.eval is None:
            return train, None, train_stats, None
        source = data.eval_path or "eval split"
        eval_set, eval_stats = encode_prompts(
            raw.eval,
            raw.numbers("eval"),
            data,
            shape,
            encoder,
            train_stats.max_length,
            context_length,
            source,
        )
        return train, eval_set, train_stats, eval_stats

    def preflight(
        self, data: DataConfig, tokenizer: PreTrainedTokenizerBase, encoded, shape: str
    ) -> list[CheckResult]:
        return []  # what a prompt is checked against belongs to the rewards: the recipe checks them

    def eval_items(self, raw: RawData, shape: str, data: DataConfig) -> list:
        """Held-out prompts with their reference as the assistant turn (for `tuneforge eval`)."""
        if raw.eval is None:
            return []
        to_messages = row_formatter(shape, data)
        items = []
        for number, row in zip(raw.numbers("eval"), raw.eval):
            prompt, kept = prompt_row(row, to_messages(row, f"eval row {number}"), f"eval row {number}")
            answer = kept.get(REFERENCE)
            items.append([*prompt, {"role": "assistant", "content": str(answer)}] if answer else prompt)
        return items


PROMPTS = PromptsTrack()
