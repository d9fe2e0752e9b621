"""Preference rows -> a prompt conversation plus its answers: pairs (chosen / rejected) or KTO's single answers.

Accepted rows (column names from data.columns):
- {prompt, chosen, rejected} with strings;
- the prompt as a message list (history: system, user, assistant, ..., user), or a `messages` column;
- chosen / rejected as message lists ending with the assistant's answer; without a prompt column their
  shared turns before the answer are the prompt (the "implicit prompt" of Anthropic's HH data);
- KTO: {prompt, completion, label}, label true/false (also 1/0, yes/no).

data.system_prompt goes before every prompt that has no system turn, as for SFT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.config.schema import DataConfig
from tuneforge.data.shapes import Message, check_messages, content_text, preview, text
from tuneforge.errors import TuneforgeError

LABELS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


@dataclass(frozen=True)
class PreferenceItem:
    """A prompt and, for a pair, the chosen and rejected answers; for KTO one answer and its label."""

    prompt: list[Message]
    answers: tuple[str, ...]  # (chosen, rejected), or (completion,)
    desirable: bool | None = None  # KTO only

    def conversation(self, answer: int = 0) -> list[Message]:
        return [*self.prompt, {"role": "assistant", "content": self.answers[answer]}]


def check_preference_columns(columns: Sequence[str], shape: str, data: DataConfig, source: str) -> None:
    cols = data.columns
    answers = [cols.completion, cols.label] if shape == "kto" else [cols.chosen, cols.rejected]
    prompt = [cols.prompt, cols.messages]
    missing = [name for name in answers if name not in columns]
    if shape == "kto" and not any(name in columns for name in prompt):
        missing.append(cols.prompt)
    if missing:
        wanted = "prompt, completion, label" if shape == "kto" else "prompt, chosen, rejected"
        raise TuneforgeError(
            f"{source}: column {missing[0]!r} not found ({shape} rows need {wanted}). Columns that exist: "
            f"{', '.join(columns)}. Map yours with data.columns.<field>: <your column>."
        )


def preference_item(row: dict[str, Any], shape: str, data: DataConfig, where: str) -> PreferenceItem:
    cols = data.columns
    if shape == "kto":
        prompt = prompt_messages(row, data, where)
        if prompt is None:
            raise TuneforgeError(f"{where}: no prompt ({cols.prompt!r} or {cols.messages!r} column is empty)")
        answer = answer_text(row[cols.completion], prompt, f"{where}, {cols.completion}")
        return PreferenceItem(prompt, (answer,), desirable=label(row[cols.label], f"{where}, {cols.label}"))
    chosen, rejected = row[cols.chosen], row[cols.rejected]
    prompt = prompt_messages(row, data, where)
    if prompt is None:  # the shared turns before the two answers are the prompt
        prompt = with_system(implicit_prompt(chosen, rejected, where), data)
    answers = (
        answer_text(chosen, prompt, f"{where}, {cols.chosen}"),
        answer_text(rejected, prompt, f"{where}, {cols.rejected}"),
    )
    return PreferenceItem(prompt, answers)


def as_messages(value: Any, where: str) -> list[Message]:
    """A message list as [{role, content}]: each item must be an object with a role."""
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
        raise TuneforgeError(
            f"{where}: expected a string or a list of {{role, content}} messages, got {preview(value)}"
        )
    for number, m in enumerate(value):
        if m.get("tool_calls") or m["role"] in ("tool", "function"):
            raise TuneforgeError(
                f"{where}, turn {number}: tool calls and tool results are not supported in preference or KTO "
                "rows yet; train them with train.method sft, or remove those rows"
            )
    return [
        {"role": m["role"], "content": content_text(m.get("content"), f"{where}, turn {number}")}
        for number, m in enumerate(value)
    ]


def prompt_messages(row: dict[str, Any], data: DataConfig, where: str) -> list[Message] | None:
    cols = data.columns
    column, value = cols.prompt, row.get(cols.prompt)
    if value is None or value == "" or value == []:
        column, value = cols.messages, row.get(cols.messages)
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        messages = [{"role": "user", "content": value}]
    else:
        messages = as_messages(value, f"{where}, {column}")
        if messages and messages[-1]["role"] == "assistant":
            raise TuneforgeError(
                f"{where}: the prompt ends with an assistant turn; it must end with the user's"
            )
    check_messages([*messages, {"role": "assistant", "content": "-"}], where)
    return with_system(messages, data)


def implicit_prompt(chosen: Any, rejected: Any, where: str) -> list[Message]:
    if not (isinstance(chosen, list) and isinstance(rejected, list)) or len(chosen) < 2:
        raise TuneforgeError(
            f"{where}: no prompt: give a prompt column (data.columns.prompt), or chosen and rejected as "
            "conversations that hold the prompt turns before the answer"
        )
    shared = as_messages(chosen, where)[:-1]
    if shared != as_messages(rejected, where)[:-1]:
        raise TuneforgeError(
            f"{where}: chosen and rejected differ before their last turn; a pair must answer the same prompt"
        )
    check_messages([*shared, {"role": "assistant", "content": "-"}], where)
    return shared


def answer_text(value: Any, prompt: list[Message], where: str) -> str:
    """A string, or a message list whose last turn is the assistant's answer; turns before it, if any, must
    be the prompt's (a system turn aside): history that is not the prompt is never silently dropped."""
    if not isinstance(value, list):
        return text(value, where)
    messages = as_messages(value, where)
    if not messages or messages[-1]["role"] != "assistant":
        raise TuneforgeError(f"{where}: an answer given as messages must end with an assistant turn")
    before = [m for m in messages[:-1] if m["role"] != "system"]
    if before and before != [m for m in prompt if m["role"] != "system"]:
        raise TuneforgeError(
            f"{where}: the turns before the answer differ from the prompt; give the whole history in the prompt "
            "column and only the answer here (or leave the prompt column out)"
        )
    return messages[-1]["content"]


def label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    found = LABELS.get(str(value).strip().lower())
    if found is None:
        raise TuneforgeError(f"{where}: label {value!r} is not true or false (also accepted: 1/0, yes/no)")
    return found


def with_system(prompt: list[Message], data: DataConfig) -> list[Message]:
    if data.system_prompt and prompt[0]["role"] != "system":
        return [{"role": "system", "content": data.system_prompt}, *prompt]
    return prompt
