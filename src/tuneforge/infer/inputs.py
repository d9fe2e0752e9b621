"""Input rows for inference, read with the run's own data mapping.

A row in the shape the run trained on (its columns, `prompt_format`, system prompt; the answer column may
be missing) becomes exactly the conversation training built from it, minus the answer, which is kept as
the reference. So `generate --input` on the training file prompts the model with the training prompts.
Rows that do not have the run's columns but have a `prompt` field are one user turn.

    rows = prompts_from_file(Path("eval.jsonl"), loaded.config.data, loaded.data_format)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.schema import DataConfig
from tuneforge.data.agent import Conversation, tools_of
from tuneforge.data.mix import source_view
from tuneforge.data.shapes import Message, detect_format, format_fields, row_formatter, text
from tuneforge.data.sources import read_rows
from tuneforge.data.tool_format import reference_text
from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class PromptRow:
    messages: list[Message]  # the conversation so far; the assistant speaks next
    reference: str | None  # the answer the row holds, if it holds one (its calls after its text, tool_format)
    row: dict[str, Any]  # the row as read, echoed into the output
    answer: Message | None = None  # the assistant turn the reference comes from, calls and trace included

    def conversation(self) -> list[Message]:
        """The whole conversation the row holds, answer last (for the held-out loss)."""
        answer = self.answer or {"role": "assistant", "content": self.reference or ""}
        return Conversation([*self.messages, answer], tools_of(self.messages))


def prompt_columns(fmt: str, view: DataConfig) -> list[str]:
    """The columns a row needs to be prompted the way training prompted it (the answer is optional)."""
    cols = view.columns
    if fmt == "alpaca":
        return [cols.instruction]
    if fmt == "prompt_completion":
        return format_fields(view.prompt_format) if view.prompt_format else [cols.prompt]
    return [{"messages": cols.messages, "sharegpt": cols.conversations}.get(fmt, cols.text)]


def answer_column(fmt: str, view: DataConfig) -> str | None:
    return {"alpaca": view.columns.output, "prompt_completion": view.columns.completion}.get(fmt)


def mapped_row(row: dict[str, Any], fmt: str, view: DataConfig) -> PromptRow:
    answer = answer_column(fmt, view)
    if answer is not None:
        reference = text(row.get(answer)) or None
        messages = row_formatter(fmt, view)({**row, answer: reference or ""})
        return PromptRow(messages[:-1], reference, row)
    messages = row_formatter(fmt, view)(row)
    if messages and messages[-1]["role"] == "assistant":  # the row's tools stay with the prompt
        return PromptRow(messages[:-1], reference_text(messages[-1]) or None, row, messages[-1])
    return PromptRow(messages, None, row)


def plain_prompt(prompt: str, data: DataConfig, row: dict[str, Any] | None = None) -> PromptRow:
    system = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    row = row if row is not None else {"prompt": prompt}
    reference = text(row.get("completion")) or None
    return PromptRow([*system, {"role": "user", "content": prompt}], reference, row)


def run_views(data: DataConfig, trained_format: str | None) -> list[tuple[str | None, DataConfig]]:
    """(shape, mapping) pairs the run trained with: one per source for data.mix."""
    if data.mix:
        return [(None if s.format == "auto" else s.format, source_view(s, data)) for s in data.mix]
    known = data.format if data.format != "auto" else trained_format
    return [(known, data)]


def shape_of(columns: Sequence[str], known: str | None, view: DataConfig) -> str | None:
    """The run's shape for these rows, detected as training did but with the answer column optional."""
    if known:
        return known
    with_answers = [*columns, view.columns.output, view.columns.completion]
    try:
        return detect_format(with_answers, view)
    except TuneforgeError:
        return None


def matching_view(columns: Sequence[str], data: DataConfig, trained_format: str | None):
    for known, view in run_views(data, trained_format):
        fmt = shape_of(columns, known, view)
        if fmt not in (None, "text") and all(name in columns for name in prompt_columns(fmt, view)):
            return fmt, view
    return None


def expected_columns(data: DataConfig, trained_format: str | None) -> list[str]:
    wanted = []
    for known, view in run_views(data, trained_format):
        shapes = [known] if known else ["messages", "sharegpt", "alpaca", "prompt_completion"]
        wanted += [" + ".join(prompt_columns(fmt, view)) for fmt in shapes if fmt != "text"]
    return wanted


def prompts_from_file(path: Path, data: DataConfig, trained_format: str | None) -> list[PromptRow]:
    if not path.is_file():
        raise TuneforgeError(f"input file not found: {path}")
    rows, _ = read_rows(str(path), hub_config=None, split="train")
    columns = rows.column_names
    found = matching_view(columns, data, trained_format)
    if found is not None:
        fmt, view = found
        return [mapped_row(row, fmt, view) for row in rows]
    if "prompt" in columns:
        return [plain_prompt(text(row["prompt"]), data, row) for row in rows]
    raise TuneforgeError(
        f"{path}: rows need the columns the run was trained on ({' or '.join(expected_columns(data, trained_format))}) "
        f"or a 'prompt' field; the file has {', '.join(columns)}"
    )
