"""Build input ids and labels from chat messages: the single place where masking is decided.

Every sample is rendered through the tokenizer's chat template. For each assistant turn the text
the template adds with `add_generation_prompt=True` is the prompt (not trained by default) and the
rest of the turn is the completion (trained), ending with the EOS token. Labels are built before
padding, so EOS stays trained even when pad == eos. `inference_prompt_ids` is what generation uses;
for a single-turn sample it is exactly the training prompt, token for token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from rich.progress import track
from transformers import PreTrainedTokenizerBase

from tuneforge.errors import TuneforgeError
from tuneforge.formatting import Message, check_messages

IGNORE = -100


@dataclass
class Encoder:
    """A tokenizer plus the facts about it that masking depends on, computed once."""

    tokenizer: PreTrainedTokenizerBase
    adds_bos: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.tokenizer.eos_token_id is None:
            raise TuneforgeError("the tokenizer has no EOS token; set one so the model can learn to stop")
        bos = self.tokenizer.bos_token_id
        self.adds_bos = bos is not None and self.tokenizer("a").input_ids[:1] == [bos]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def with_bos(self, ids: list[int]) -> list[int]:
        """Prepend BOS once, as the tokenizer would, unless the template already wrote it (no double BOS)."""
        bos = self.tokenizer.bos_token_id
        return [bos, *ids] if self.adds_bos and ids[:1] != [bos] else ids


def inference_prompt_ids(encoder: Encoder, messages: list[Message]) -> list[int]:
    """The ids generation feeds the model for a conversation whose next turn is the assistant's."""
    return encoder.with_bos(encoder.encode(encoder.render(messages, add_generation_prompt=True)))


def build_sample(encoder: Encoder, messages: list[Message], train_on: str = "completion") -> dict[str, Any]:
    """ids and labels for a conversation; `prompt_len` is where the final assistant answer starts."""
    eos_id, eos_text = encoder.tokenizer.eos_token_id, encoder.tokenizer.eos_token
    last = max(i for i, turn in enumerate(messages) if turn["role"] == "assistant")
    ids: list[int] = []
    labels: list[int] = []
    rendered, carry, prompt_len = "", "", 0
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        prompt = encoder.render(messages[:i], add_generation_prompt=True)
        full = encoder.render(messages[: i + 1], add_generation_prompt=False)
        if not (prompt.startswith(rendered) and full.startswith(prompt)):
            raise TuneforgeError(
                "the chat template does not render conversations as prefixes of each other, so prompt and "
                "completion cannot be separated; use another template (data.template)"
            )
        answer = full[len(prompt) :]
        end = answer.rfind(eos_text)
        # Text after the template's EOS (usually a newline) belongs to the next prompt, not to the answer.
        answer, next_carry = (
            (answer[: end + len(eos_text)], answer[end + len(eos_text) :]) if end >= 0 else (answer, "")
        )
        prompt_ids = encoder.encode(carry + prompt[len(rendered) :])
        # A template that does not write EOS still ends the conversation with it (so the model stops), but
        # not earlier turns: inference would never show the model an EOS mid-conversation.
        answer_ids = encoder.encode(answer) + ([eos_id] if end < 0 and i == last else [])
        ids += prompt_ids
        prompt_len = len(ids)
        ids += answer_ids
        labels += (prompt_ids if train_on == "all" else [IGNORE] * len(prompt_ids)) + answer_ids
        rendered, carry = full, next_carry
    with_bos = encoder.with_bos(ids)
    added = len(with_bos) - len(ids)
    return {"input_ids": with_bos, "labels": [IGNORE] * added + labels, "prompt_len": prompt_len + added}


def build_text_sample(encoder: Encoder, text: str) -> dict[str, Any]:
    """Plain text (continued pretraining): every token is trained, EOS closes the document."""
    ids = encoder.with_bos(encoder.encode(text)) + [encoder.tokenizer.eos_token_id]
    first = 1 if ids[:1] == [encoder.tokenizer.bos_token_id] and encoder.adds_bos else 0
    return {"input_ids": ids, "labels": [IGNORE] * first + ids[first:], "prompt_len": 0}


@dataclass
class TokenizeStats:
    rows: int = 0
    empty_completion: int = 0
    truncated: int = 0
    no_trained_tokens: int = 0
    dropped_long: int = 0
    dropped_short: int = 0
    kept: int = 0
    prompt_checked: int = 0
    prompt_mismatches: list[int] = field(default_factory=list)


def tokenize_rows(
    rows: Dataset,
    to_sample_input: Any,
    encoder: Encoder,
    *,
    max_length: int,
    train_on: str,
    source: str,
    too_long: str = "truncate",
    min_tokens: int = 0,
    prompt_checks: int = 200,
) -> tuple[Dataset, TokenizeStats]:
    """Tokenize every row; drop (and count) rows with nothing to train; compare the first `prompt_checks`
    training prompts with what inference builds for the same conversation."""
    stats = TokenizeStats(rows=len(rows))
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": [], "truncated": []}
    for index, row in enumerate(track(rows, description=f"tokenizing {source}", transient=True)):
        item = to_sample_input(row)
        if isinstance(item, str):
            sample = build_text_sample(encoder, item) if item.strip() else None
        else:
            check_messages(item, f"{source} row {index}")
            sample = build_sample(encoder, item, train_on) if item[-1]["content"].strip() else None
            if sample is not None and stats.prompt_checked < prompt_checks:
                stats.prompt_checked += 1
                last = max(i for i, turn in enumerate(item) if turn["role"] == "assistant")
                if inference_prompt_ids(encoder, item[:last]) != sample["input_ids"][: sample["prompt_len"]]:
                    stats.prompt_mismatches.append(index)
        if sample is None:
            stats.empty_completion += 1
            continue
        cut = len(sample["input_ids"]) > max_length
        if cut and too_long == "drop" or len(sample["input_ids"]) < min_tokens:
            stats.dropped_long += cut
            stats.dropped_short += not cut
            continue
        stats.truncated += cut
        ids, labels = sample["input_ids"][:max_length], sample["labels"][:max_length]
        if all(label == IGNORE for label in labels):
            stats.no_trained_tokens += 1
            continue
        for key, value in (("input_ids", ids), ("labels", labels), ("length", len(ids)), ("truncated", cut)):
            out[key].append(value)
    stats.kept = len(out["input_ids"])
    if stats.kept == 0:
        raise TuneforgeError(
            f"{source}: no row has a trainable completion after tokenization "
            f"({stats.empty_completion} empty, {stats.no_trained_tokens} cut off by train.max_length={max_length})"
        )
    return Dataset.from_dict(out), stats
