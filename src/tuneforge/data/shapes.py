"""Turn a dataset row of any supported shape into chat messages [{role, content}, ...] (or plain text).

Shapes: alpaca (instruction / optional input / output), prompt_completion (any two columns, or a
`prompt_format` string over any columns), `messages` (OpenAI style), `sharegpt` ({from, value} turns)
and `text` (plain documents, every token trained). Column names come from `data.columns`; a missing
column is an error that lists the columns the file has.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from typing import Any

from tuneforge.config.schema import DataConfig
from tuneforge.errors import TuneforgeError

Message = dict[str, str]
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "chatgpt": "assistant", "system": "system"}  # fmt: skip


def detect_format(columns: Sequence[str], data: DataConfig) -> str:
    if data.format != "auto":
        return data.format
    cols = data.columns
    if cols.messages in columns:
        return "messages"
    if cols.conversations in columns:
        return "sharegpt"
    if cols.instruction in columns and cols.output in columns:
        return "alpaca"
    if (cols.prompt in columns or data.prompt_format) and cols.completion in columns:
        return "prompt_completion"
    if cols.text in columns:
        return "text"
    raise TuneforgeError(
        f"cannot tell the shape of data {data.path!r} from its columns ({', '.join(columns)}). "
        "Set data.format (alpaca | prompt_completion | messages | sharegpt | text) and name your columns "
        "under data.columns, "
        "e.g. data.columns.prompt: question, data.columns.completion: answer."
    )


def required_columns(fmt: str, data: DataConfig) -> list[str]:
    cols = data.columns
    if fmt in ("messages", "sharegpt", "text"):
        return [getattr(cols, {"messages": "messages", "sharegpt": "conversations", "text": "text"}[fmt])]
    if fmt == "alpaca":
        return [cols.instruction, cols.output]
    prompt_cols = format_fields(data.prompt_format) if data.prompt_format else [cols.prompt]
    return [*prompt_cols, cols.completion]


def format_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def check_columns(columns: Sequence[str], fmt: str, data: DataConfig, source: str) -> None:
    missing = [name for name in required_columns(fmt, data) if name not in columns]
    if missing:
        raise TuneforgeError(
            f"{source}: column {missing[0]!r} not found (format {fmt}). Columns that exist: {', '.join(columns)}. "
            f"Map yours with data.columns.<field>: <your column> or fix data.prompt_format."
        )


def row_formatter(fmt: str, data: DataConfig) -> Callable[[dict[str, Any]], list[Message] | str]:
    """Return a function row -> messages (or, for plain text, the document) for the chosen shape."""
    system = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    cols = data.columns

    def alpaca(row: dict[str, Any]) -> list[Message]:
        extra = text(row.get(cols.input))
        user = text(row[cols.instruction]) + (f"\n\n{extra}" if extra else "")
        return [
            *system,
            {"role": "user", "content": user},
            {"role": "assistant", "content": text(row[cols.output])},
        ]

    def prompt_completion(row: dict[str, Any]) -> list[Message]:
        fields = {k: text(v) for k, v in row.items()}
        prompt = data.prompt_format.format(**fields) if data.prompt_format else fields[cols.prompt]
        return [
            *system,
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": fields[cols.completion]},
        ]

    def messages(row: dict[str, Any]) -> list[Message]:
        return with_system([{"role": m["role"], "content": text(m["content"])} for m in row[cols.messages]])

    def sharegpt(row: dict[str, Any]) -> list[Message]:
        turns = []
        for turn in row[cols.conversations]:
            role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
            if role is None:
                raise TuneforgeError(
                    f"sharegpt turn 'from' is {turn.get('from')!r}; expected one of {', '.join(SHAREGPT_ROLES)}"
                )
            turns.append({"role": role, "content": text(turn.get("value"))})
        return with_system(turns)

    def with_system(turns: list[Message]) -> list[Message]:
        return system + turns if system and (not turns or turns[0]["role"] != "system") else turns

    def plain(row: dict[str, Any]) -> str:
        return text(row[cols.text])

    formatters = {"alpaca": alpaca, "prompt_completion": prompt_completion, "messages": messages}
    return {**formatters, "sharegpt": sharegpt, "text": plain}[fmt]


def text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def check_messages(messages: list[Message], where: str) -> None:
    """A trainable conversation opens with a user (or system) turn and ends with an assistant turn."""
    for turn in messages:
        if turn.get("role") not in ROLES:
            raise TuneforgeError(f"{where}: role {turn.get('role')!r} is not one of {', '.join(ROLES)}")
    if not messages or messages[-1]["role"] != "assistant":
        raise TuneforgeError(f"{where}: the conversation must end with an assistant turn")
    if messages[0]["role"] == "assistant":
        raise TuneforgeError(f"{where}: the conversation opens with an assistant turn; nothing prompts it")
