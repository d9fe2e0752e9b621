"""Agent and reasoning turns: tool calls, tool results, the tools a row offers, and reasoning traces, read
from the shapes users bring into the structures chat templates render (transformers' tool-use format).

- An assistant turn may carry `tool_calls` (OpenAI: [{"id", "type": "function", "function": {"name",
  "arguments"}}], arguments a JSON string or an object) and a reasoning trace (`reasoning_content`, or
  `thinking`). Its content may then be null or empty.
- A `tool` (or `function`) turn holds a result: its content, and `tool_call_id` / `name` when given.
- ShareGPT-style sets (LLaMA-Factory, glaive) write a call as a `function_call` turn whose value is
  {"name", "arguments"} JSON, and its result as an `observation` turn.
- A row's `tools` column lists the JSON schemas offered ({"type": "function", "function": {...}} or the
  bare {"name", "description", "parameters"}), as a list or a JSON string.

Arguments become objects here, since templates write them with `tojson`; a string that is not JSON is an
error naming the row, turn and tool. `check_tool_turns` holds calls to the row's tool schemas and results to
the calls they answer. What a template does with these fields is its own business: training
renders them with it, exactly as inference does.
"""

from __future__ import annotations

import json
from typing import Any

from tuneforge.errors import TuneforgeError

TOOL_ROLES = {"tool": "tool", "function": "tool", "ipython": "tool", "observation": "tool"}
REASONING_KEYS = ("reasoning_content", "thinking")


class Conversation(list):
    """Chat messages, plus the tools the row offers (None: no tools), which the template renders too."""

    def __init__(self, messages=(), tools: list[dict] | None = None):
        super().__init__(messages)
        self.tools = tools

    def __getitem__(self, index):
        """A slice is the conversation so far: it keeps the tools (a plain list slice would drop them)."""
        found = super().__getitem__(index)
        return Conversation(found, self.tools) if isinstance(index, slice) else found


def empty_answer(turn: dict) -> bool:
    """An assistant turn with nothing to train: no text, no tool call, no reasoning."""
    return not turn["content"].strip() and not turn.get("tool_calls") and not turn.get("reasoning_content")


def tools_of(messages: list) -> list[dict] | None:
    return getattr(messages, "tools", None)


def parsed_json(value: Any, where: str, what: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise TuneforgeError(
            f"{where}: {what} is not valid JSON ({exc.msg} at character {exc.pos}): {value[:120]!r}. Write it as "
            "a JSON object, or fix or remove the row."
        ) from None


def tool_call(call: Any, where: str) -> dict:
    """One call as templates read it: {"type": "function", "function": {"name", "arguments": {...}}}."""
    if not isinstance(call, dict):
        raise TuneforgeError(f"{where}: a tool call must be an object, got {json.dumps(call)[:120]}")
    function = call.get("function", call)  # OpenAI nests it; ShareGPT's function_call value does not
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise TuneforgeError(f"{where}: a tool call has no function name: {json.dumps(call)[:120]}")
    arguments = parsed_json(function.get("arguments", {}), where, f"the arguments of tool call {name!r}")
    if not isinstance(arguments, dict):
        raise TuneforgeError(f"{where}: the arguments of tool call {name!r} must be a JSON object")
    found = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if isinstance(call.get("id"), str):
        found["id"] = call["id"]
    return found


def assistant_extras(turn: dict, where: str) -> dict:
    """The tool calls and reasoning trace of an assistant turn, in the keys templates read."""
    extras: dict[str, Any] = {}
    calls = turn.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise TuneforgeError(f"{where}: tool_calls must be a list of calls")
        extras["tool_calls"] = [tool_call(call, f"{where}, tool call {n}") for n, call in enumerate(calls)]
    for key in REASONING_KEYS:
        if isinstance(turn.get(key), str) and turn[key]:
            extras["reasoning_content"] = turn[key]
            break
    return extras


def tool_result_extras(turn: dict) -> dict:
    """A tool turn's link to its call, when the row gives one."""
    return {key: turn[key] for key in ("tool_call_id", "name") if isinstance(turn.get(key), str)}


def row_tools(value: Any, where: str) -> list[dict] | None:
    """A row's tools column: the schemas, each as {"type": "function", "function": {...}}."""
    if value is None or value == "" or value == []:
        return None
    tools = parsed_json(value, where, "the tools column")
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise TuneforgeError(
            f"{where}: the tools column must be a list of JSON schemas, got {str(value)[:120]}"
        )
    found = []
    for number, tool in enumerate(tools):
        function = tool.get("function", tool)
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TuneforgeError(f"{where}, tool {number}: a tool schema needs a function name")
        found.append({"type": "function", "function": function})
    return found


def check_tool_turns(messages: list, where: str) -> None:
    """Every call names a tool the row offers, with arguments its schema accepts; every result answers a
    call of the assistant turn before it (by tool_call_id when the row gives ids). Errors name the row,
    turn and tool, since a wrong call trained is a wrong habit learned."""
    from jsonschema import Draft202012Validator  # only rows with tool calls need it

    offered = {tool["function"]["name"]: tool["function"] for tool in tools_of(messages) or ()}
    open_ids: list[str | None] = []
    for number, turn in enumerate(messages):
        at = f"{where}, turn {number}"
        if turn["role"] == "tool":
            if not open_ids:
                raise TuneforgeError(f"{at}: a tool result with no call left to answer (one result per call)")
            wanted = turn.get("tool_call_id")
            if wanted and any(open_ids) and wanted not in open_ids:
                raise TuneforgeError(f"{at}: tool_call_id {wanted!r} answers no call of the turn before it")
            open_ids.remove(wanted if wanted in open_ids else open_ids[0])
            continue
        calls = turn.get("tool_calls") or []
        open_ids = [call.get("id") for call in calls]
        for call in calls:
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            if not offered:
                continue  # no tools column: nothing to check the call against
            if name not in offered:
                raise TuneforgeError(
                    f"{at}: calls {name!r}, which the row's tools do not offer ({', '.join(offered)})"
                )
            error = next(
                Draft202012Validator(offered[name].get("parameters") or {}).iter_errors(arguments), None
            )
            if error is not None:
                path = "/".join(str(part) for part in error.absolute_path) or "arguments"
                raise TuneforgeError(
                    f"{at}: the arguments of {name!r} do not match its schema ({path}: {error.message})"
                )
