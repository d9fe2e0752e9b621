"""Tokenize a whole split through the encoder, check every sample, then apply the length policy.

Each row becomes a conversation (or a plain document) and is encoded by `encode.ChatEncoder`. Every
sample is checked on the way: the tokens before each answer are compared with the prompt inference builds
for that conversation, and each answer's trained tokens are decoded and compared with its text. Then
`train.max_length` is resolved (auto: the smallest multiple of 64 covering 99% of the samples, capped at
the model's context) and long samples are cut or dropped. Everything that happened is counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from datasets import Dataset
from rich import get_console

from tuneforge.data.agent import empty_answer
from tuneforge.data.encode import IGNORE, ChatEncoder, EncodedSample
from tuneforge.data.shapes import Message, check_messages
from tuneforge.errors import TuneforgeError
from tuneforge.progress import Phase

AUTO_LENGTH_STEP = 64
AUTO_LENGTH_COVERS = 0.99


@dataclass
class TokenizeStats:
    source: str = "data"  # the file (or split) the rows came from, for messages
    rows: int = 0
    empty_completion: int = 0
    empty_rows: list[int] = field(default_factory=list)  # row numbers of the empty answers
    truncated: int = 0
    no_trained_tokens: int = 0
    dropped_long: int = 0
    dropped_short: int = 0
    kept: int = 0
    max_length: int = 0  # the length applied (what auto resolved to)
    context_length: int | None = None  # the model's, when known: no length beyond it fits
    p99_length: int = 0  # untruncated length that 99% of the samples fit in
    lengths: list[int] = field(default_factory=list)  # untruncated token length of every encoded sample
    prompt_checked: int = 0  # samples whose prompts were compared with the inference prompts
    prompt_mismatches: list[int] = field(default_factory=list)  # row numbers
    answer_mismatches: list[int] = field(default_factory=list)  # row numbers


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest rank: the smallest value that at least a share q of the values are less than or equal to."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def covering_length(p99_length: int) -> int:
    """The multiple of AUTO_LENGTH_STEP that auto would choose for this p99, were there no context limit."""
    return -(-p99_length // AUTO_LENGTH_STEP) * AUTO_LENGTH_STEP


def auto_max_length(lengths: list[int], context_length: int | None) -> int:
    fit = covering_length(percentile(sorted(lengths), AUTO_LENGTH_COVERS))
    return min(fit, context_length) if context_length else fit


def prompt_matches(encoder: ChatEncoder, messages: list[Message], sample: EncodedSample) -> bool:
    """Training saw, before every answer, exactly the ids inference builds for that conversation."""
    return all(
        sample.input_ids[: answer.start] == encoder.prompt_ids(messages[: answer.turn])
        for answer in sample.answers
    )


def answers_decode_exactly(encoder: ChatEncoder, sample: EncodedSample) -> bool:
    """Each answer's trained tokens decode to its text. Prompt characters merged into the first token are
    the boundary rule's business (prompt_match counts those samples), so they are expected here."""
    return all(
        encoder.decode_span(sample.input_ids, answer.start, answer.end) == answer.merged + answer.text
        for answer in sample.answers
    )


def encode_row(
    item: list[Message] | str,
    encoder: ChatEncoder,
    train_on: str,
    where: str,
    stats: TokenizeStats,
    number: int | None = None,
) -> EncodedSample | None:
    if isinstance(item, str):
        return encoder.encode_text(item) if item.strip() else None
    check_messages(item, where)
    if empty_answer(item[-1]):
        return None
    sample = encoder.encode_conversation(item, train_on)
    stats.prompt_checked += 1
    if not prompt_matches(encoder, item, sample):
        stats.prompt_mismatches.append(stats.rows if number is None else number)
    if not answers_decode_exactly(encoder, sample):
        stats.answer_mismatches.append(stats.rows if number is None else number)
    return sample


def tokenize_rows(
    rows: Dataset,
    to_sample_input: Callable[[dict, str], list[Message] | str],
    encoder: ChatEncoder,
    *,
    max_length: int | None,
    context_length: int | None,
    train_on: str,
    source: str,
    too_long: str = "truncate",
    min_tokens: int = 0,
    numbers: list[int] | None = None,
) -> tuple[Dataset, TokenizeStats]:
    """Encode and check every row, then cut or drop samples longer than max_length (None: auto)."""
    stats = TokenizeStats(source=source, context_length=context_length)
    samples: list[EncodedSample] = []
    with Phase(get_console(), f"tokenizing {source}", total=len(rows)) as phase:
        for row in rows:
            number = numbers[stats.rows] if numbers is not None else stats.rows
            where = f"{source} row {number}"
            sample = encode_row(to_sample_input(row, where), encoder, train_on, where, stats, number)
            stats.rows += 1
            phase.advance()
            if sample is None:
                stats.empty_completion += 1
                stats.empty_rows.append(number)
            else:
                samples.append(sample)
    if not samples:
        raise TuneforgeError(f"{source}: no row has an answer to train on ({stats.rows} rows read)")
    stats.lengths = [len(s.input_ids) for s in samples]
    stats.p99_length = percentile(sorted(stats.lengths), AUTO_LENGTH_COVERS)
    stats.max_length = max_length or auto_max_length(stats.lengths, context_length)
    dataset = apply_length_policy(samples, stats, too_long=too_long, min_tokens=min_tokens)
    if stats.kept == 0:
        raise TuneforgeError(
            f"{source}: no row has a trainable completion after tokenization ({stats.empty_completion} empty, "
            f"{stats.no_trained_tokens} cut off by train.max_length={stats.max_length})"
        )
    return dataset, stats


def apply_length_policy(
    samples: list[EncodedSample], stats: TokenizeStats, *, too_long: str, min_tokens: int
) -> Dataset:
    out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], "truncated": []}
    limit = stats.max_length
    for sample in samples:
        cut = len(sample.input_ids) > limit
        if (cut and too_long == "drop") or len(sample.input_ids) < min_tokens:
            stats.dropped_long += cut
            stats.dropped_short += not cut
            continue
        stats.truncated += cut
        ids, labels = sample.input_ids[:limit], sample.labels[:limit]
        if all(label == IGNORE for label in labels):
            stats.no_trained_tokens += 1
            continue
        for key, value in (("input_ids", ids), ("labels", labels), ("length", len(ids)), ("truncated", cut)):
            out[key].append(value)
    stats.kept = len(out["input_ids"])
    return Dataset.from_dict(out)
