"""Turn a dataset row of any supported shape into chat messages [{role, content}, ...] (or plain text).

Shapes: alpaca (instruction / optional input / output), prompt_completion (any two columns, or a
`prompt_format` string over any columns), `messages` (OpenAI style), `sharegpt` ({from, value} turns)
and `text` (plain documents, every token trained). Column names come from `data.columns`; a missing
column is an error that lists the columns the file has.

Cells become text here and nowhere else: strings as they are, numbers written out, null as empty (an
absent alpaca input). A struct or list in a text column is an error naming the row and column, never its
Python repr in a prompt. A message's content may be OpenAI-style parts ([{"type": "text", "text": ...}]):
all-text parts are joined with "\n" (as vLLM flattens them), any other part type is an error; a null
content is an error naming the row and turn.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from typing import Any

from tuneforge.config.schema import DataConfig
from tuneforge.data.agent import (
    TOOL_ROLES,
    Conversation,
    assistant_extras,
    check_tool_turns,
    parsed_json,
    row_tools,
    tool_result_extras,
)
from tuneforge.errors import TuneforgeError

Message = dict[str, Any]  # role, content, and for agent turns tool_calls / reasoning_content / tool_call_id
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "chatgpt": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}  # fmt: skip


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


def row_formatter(fmt: str, data: DataConfig) -> Callable[..., list[Message] | str]:
    """Return a function (row, where) -> messages (or, for plain text, the document) for the chosen shape;
    `where` (e.g. "train.jsonl row 4") starts any message about a cell of that row."""
    system = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    cols = data.columns

    def cell(row: dict[str, Any], column: str, where: str) -> str:
        return text(row.get(column), f"{where}, column {column!r}")

    def alpaca(row: dict[str, Any], where: str = "a row") -> list[Message]:
        extra = cell(row, cols.input, where)
        user = cell(row, cols.instruction, where) + (f"\n\n{extra}" if extra else "")
        return [
            *system,
            {"role": "user", "content": user},
            {"role": "assistant", "content": cell(row, cols.output, where)},
        ]

    def prompt_completion(row: dict[str, Any], where: str = "a row") -> list[Message]:
        # Only the columns the prompt uses are read: a struct column beside them is none of our business.
        used = format_fields(data.prompt_format) if data.prompt_format else [cols.prompt]
        fields = {name: cell(row, name, where) for name in used}
        prompt = data.prompt_format.format(**fields) if data.prompt_format else fields[cols.prompt]
        return [
            *system,
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": cell(row, cols.completion, where)},
        ]

    def messages(row: dict[str, Any], where: str = "a row") -> list[Message]:
        turns = [
            message_turn(turn, f"{where}, turn {number}")
            for number, turn in enumerate(turn_list(row, cols.messages, where))
        ]
        return Conversation(with_system(turns), tools(row, where))

    def sharegpt(row: dict[str, Any], where: str = "a row") -> list[Message]:
        turns = [
            sharegpt_turn(turn, f"{where}, turn {number}")
            for number, turn in enumerate(turn_list(row, cols.conversations, where))
        ]
        return Conversation(with_system(turns), tools(row, where))

    def tools(row: dict[str, Any], where: str) -> list[dict] | None:
        return row_tools(row.get(cols.tools), f"{where}, column {cols.tools!r}")

    def with_system(turns: list[Message]) -> list[Message]:
        return system + turns if system and (not turns or turns[0]["role"] != "system") else turns

    def plain(row: dict[str, Any], where: str = "a row") -> str:
        return cell(row, cols.text, where)

    formatters = {"alpaca": alpaca, "prompt_completion": prompt_completion, "messages": messages}
    return {**formatters, "sharegpt": sharegpt, "text": plain}[fmt]


def sharegpt_turn(turn: dict[str, Any], where: str) -> Message:
    """One {from, value} turn; a function_call's value is the call ({"name", "arguments"}, or a list)."""
    source = str(turn.get("from", "")).lower()
    role = SHAREGPT_ROLES.get(source)
    if role is None:
        raise TuneforgeError(
            f"{where}: sharegpt turn 'from' is {turn.get('from')!r}; expected one of {', '.join(SHAREGPT_ROLES)}"
        )
    if source == "function_call":
        calls = parsed_json(turn.get("value"), where, "the function_call value")
        calls = calls if isinstance(calls, list) else [calls]
        return message_turn({"role": "assistant", "content": None, "tool_calls": calls}, where)
    return message_turn({"role": role, "content": turn.get("value")}, where)


def message_turn(turn: dict[str, Any], where: str) -> Message:
    """One OpenAI-style turn as templates read it (agent.py: tool calls, tool results, reasoning)."""
    role = TOOL_ROLES.get(turn.get("role"), turn.get("role"))
    if role == "assistant":
        extras = assistant_extras(turn, where)
        empty = turn.get("content") is None and (extras.get("tool_calls") or extras.get("reasoning_content"))
        return {"role": role, "content": "" if empty else content_text(turn.get("content"), where), **extras}
    if role == "tool":
        content = turn.get("content")
        content = json.dumps(content, ensure_ascii=False) if isinstance(content, dict) else content
        return {"role": role, "content": content_text(content, where), **tool_result_extras(turn)}
    return {"role": role, "content": content_text(turn.get("content"), where)}


def turn_list(row: dict[str, Any], column: str, where: str) -> list[dict[str, Any]]:
    turns = row.get(column)
    if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
        raise TuneforgeError(
            f"{where}, column {column!r}: expected a list of turns ({{role, content}} objects), got {preview(turns)}"
        )
    return turns


def text(value: Any, where: str = "a cell") -> str:
    """A cell as prompt or answer text: a string as it is, a number written out, null empty. A struct or a
    list is an error: its Python repr ("{'text': ...}") would be trained as if it were the text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        kind = "a struct" if isinstance(value, dict) else "a list"
        field = " (its 'text' field?)" if isinstance(value, dict) and "text" in value else ""
        raise TuneforgeError(
            f"{where} holds {kind}, not text: {preview(value)}. Map data.columns to a column of plain text, or "
            f"write the text itself into this column{field}."
        )
    return str(value)


def content_text(value: Any, where: str) -> str:
    """A message's content: a string, or OpenAI-style content parts that are all text, joined with a
    newline as vLLM and TensorRT-LLM flatten them. null is an error, not an empty turn: a turn with no text
    (a tool call, a lost value) cannot be rendered as the conversation it was."""
    if isinstance(value, str):
        return value
    if value is None:
        raise TuneforgeError(
            f'{where}: content is null. Every turn needs its text ("" if the turn is meant to be empty); only '
            "an assistant turn with tool_calls or a reasoning trace may have none."
        )
    if isinstance(value, dict):
        raise TuneforgeError(
            f"{where}: content is a struct, not text: {preview(value)}. Write the text itself, or a list of "
            '{"type": "text", "text": ...} parts.'
        )
    if not isinstance(value, list):
        return str(value)
    texts = []
    for number, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise TuneforgeError(
                f"{where}, content part {number} is {preview(kind or part)}: only text parts "
                '({"type": "text", "text": ...}) can be trained; images, audio and other media are not '
                "supported. Remove those parts or the row."
            )
        texts.append(text(part.get("text"), f"{where}, content part {number}"))
    return "\n".join(texts)


def preview(value: Any, limit: int = 120) -> str:
    """A short JSON view of a cell for messages (JSON, not repr: it is what the user wrote)."""
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def check_messages(messages: list[Message], where: str) -> None:
    """A trainable conversation opens with a user (or system) turn and ends with an assistant turn; a tool
    result follows an assistant turn or another result."""
    for turn in messages:
        if turn.get("role") not in ROLES:
            raise TuneforgeError(f"{where}: role {turn.get('role')!r} is not one of {', '.join(ROLES)}")
    if not messages or messages[-1]["role"] != "assistant":
        raise TuneforgeError(f"{where}: the conversation must end with an assistant turn")
    if messages[0]["role"] == "assistant":
        raise TuneforgeError(f"{where}: the conversation opens with an assistant turn; nothing prompts it")
    for number, (before, turn) in enumerate(zip(messages, messages[1:]), start=1):
        if turn["role"] == "tool" and before["role"] not in ("assistant", "tool"):
            raise TuneforgeError(
                f"{where}, turn {number}: a tool result must follow the assistant turn that called it"
            )
    if any(turn["role"] == "tool" or turn.get("tool_calls") for turn in messages):
        check_tool_turns(messages, where)
