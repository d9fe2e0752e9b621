"""Reading an answer back out of generated text, in the format templates write it: a reasoning trace,
the text the user reads, and tool calls.

One format, the one tuneforge's chatml built-in writes and Hermes / Qwen2.5 / Qwen3 templates share: a
trace between <think> and </think> at the start (the generation prompt may write the opening tag itself),
then the text, then each call as a JSON object {"name": ..., "arguments": {...}}
between <tool_call> and </tool_call>. The data stage uses it to check that a rendered call parses back into
the row's call; `generate`, `eval` and the server use it to return `tool_calls` and `reasoning_content`.

    parse_calls('<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')  # [{"name": "f", ...}]
    split_answer("<think>\\nsum it\\n</think>\\n\\n4")  # Answer(content="4", reasoning="sum it", calls=None)
    stream = AnswerStream(tools=True); stream.feed("<thi"); stream.feed("nk>a</think>b")  # ("a", "b")
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class Answer:
    """A generated turn taken apart."""

    content: str  # what the user reads: no trace, no calls
    reasoning: str | None  # the trace, without its tags
    calls: (
        list[dict] | None
    )  # [{"name", "arguments"}] as parse_calls gives them; None: the turn calls nothing

    @property
    def scored(self) -> str:
        """The answer as metrics compare it with a reference: the text and the calls, in the canonical
        format (render_calls), without the trace, which is the model's own way there."""
        return with_calls(self.content, self.calls or [])


def parse_calls(text: str) -> list[dict] | None:
    """The calls in `text` as [{"name", "arguments"}], or None when it holds no call in a known format.
    A block that is not a JSON object with a name comes back as {"name": None, "raw": block}."""
    blocks = HERMES.findall(text)
    if not blocks:
        return None
    calls = []
    for block in blocks:
        try:
            found = json.loads(block)
        except json.JSONDecodeError:
            found = None
        if not isinstance(found, dict) or not isinstance(found.get("name"), str):
            calls.append({"name": None, "raw": block})
            continue
        arguments = found.get("arguments", found.get("parameters", {}))
        if isinstance(
            arguments, str
        ):  # some models write the arguments as a JSON string, as OpenAI sends them
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
        calls.append({"name": found["name"], "arguments": arguments})
    return calls


def split_reasoning(text: str, opened: bool = False) -> tuple[str | None, str]:
    """(trace, rest): a trace opens the answer; `opened`: the prompt wrote the opening tag itself (DeepSeek-R1
    style), so the text starts inside the trace."""
    stripped = (THINK_OPEN + text if opened else text).lstrip()
    if not stripped.startswith(THINK_OPEN):
        return None, text
    inner, _, rest = stripped[len(THINK_OPEN) :].partition(THINK_CLOSE)
    return inner.strip(), rest.lstrip()


def split_answer(text: str, tools: bool = True, opened: bool = False) -> Answer:
    """A generated turn as (content, reasoning, calls); with tools=False calls stay in the content, as a
    server does when the request offered no tools."""
    reasoning, rest = split_reasoning(text, opened)
    calls = parse_calls(rest) if tools else None
    content = rest[: rest.find(CALL_OPEN)] if calls else rest
    return Answer(content.strip(), reasoning or None, calls)


def opens_trace(prompt_tail: str) -> bool:
    """Whether a prompt ends inside an open trace: its last <think> is not closed."""
    return prompt_tail.rfind(THINK_OPEN) > prompt_tail.rfind(THINK_CLOSE)


def well_formed(calls: list[dict] | None) -> bool:
    """Calls a client can run: every block parsed into a name and an arguments object."""
    return bool(calls) and all(c["name"] is not None and isinstance(c["arguments"], dict) for c in calls)


class AnswerStream:
    """An answer arriving piece by piece, split as split_answer splits the whole: `feed` returns the trace
    and content that can be sent now, holding back what a later piece may turn into a tag (a partial
    "</think>" or "<tool_call>") and trailing whitespace; `finish` returns the rest and the calls. The
    pieces of each add up to split_answer's; calls that do not parse are sent as content, as written."""

    def __init__(self, tools: bool, opened: bool = False):
        self.tools, self.opened = tools, opened
        self.text, self.sent_reasoning, self.sent_content = "", "", ""

    def feed(self, delta: str) -> tuple[str, str]:
        self.text += delta
        return self.advance(*self.ready())

    def finish(self) -> tuple[str, str, list[dict] | None]:
        answer = split_answer(self.text, self.tools, self.opened)
        calls = answer.calls if well_formed(answer.calls) else None
        content = answer.content if calls or not answer.calls else split_reasoning(self.text, self.opened)[1]
        return *self.advance(answer.reasoning or "", content.strip()), calls

    def advance(self, reasoning: str, content: str) -> tuple[str, str]:
        new = reasoning[len(self.sent_reasoning) :], content[len(self.sent_content) :]
        self.sent_reasoning, self.sent_content = reasoning, content
        return new

    def ready(self) -> tuple[str, str]:
        whole = (THINK_OPEN + self.text if self.opened else self.text).lstrip()
        if len(whole) < len(THINK_OPEN) and THINK_OPEN.startswith(whole):
            return self.sent_reasoning, self.sent_content  # a trace may be opening: wait
        reasoning, rest = "", whole
        if whole.startswith(THINK_OPEN):  # as split_reasoning reads it, once the trace is closed
            inner, closed, rest = whole[len(THINK_OPEN) :].partition(THINK_CLOSE)
            if not closed:
                return held(inner.lstrip(), THINK_CLOSE), ""
            reasoning, rest = inner.strip(), rest.lstrip()
        if self.tools:
            rest = held(rest[: rest.find(CALL_OPEN)] if CALL_OPEN in rest else rest, CALL_OPEN)
        return reasoning, rest.rstrip()


def held(text: str, tag: str) -> str:
    """The text without an end that may be the start of `tag`, and without trailing whitespace."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return text[:-size].rstrip()
    return text.rstrip()


def render_calls(calls: list[dict]) -> str:
    """Calls ({"name", "arguments"}, or OpenAI's {"function": {...}}) in the canonical format, one block
    each, as the chatml built-in writes them."""
    blocks = []
    for call in calls:
        if call.get("name") is None and "raw" in call:  # a block that did not parse stays as written
            blocks.append(f"{CALL_OPEN}\n{call['raw']}\n{CALL_CLOSE}")
            continue
        function = call.get("function", call)
        body = {"name": function["name"], "arguments": function.get("arguments", {})}
        blocks.append(f"{CALL_OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{CALL_CLOSE}")
    return "\n".join(blocks)


def with_calls(content: str, calls: list[dict]) -> str:
    """A turn's text followed by its calls, as references and scored answers are written."""
    return "\n".join(part for part in (content, render_calls(calls)) if part)


def reference_text(turn: dict) -> str:
    """An assistant turn of a row as metrics compare answers with it: its text and its calls (no trace)."""
    return with_calls(turn["content"].strip(), turn.get("tool_calls") or [])


def same_calls(predicted: list[dict] | None, wanted: list[dict] | None, names_only: bool = False) -> bool:
    """Whether the calls match in order: names, and unless names_only their arguments as JSON values
    (key order and spacing do not matter; 1 and 1.0 are equal, as JSON has one number type)."""
    predicted, wanted = predicted or [], wanted or []
    if len(predicted) != len(wanted):
        return False
    for got, want in zip(predicted, wanted):
        if got.get("name") != want.get("name"):
            return False
        if not names_only and got.get("arguments") != want.get("arguments"):
            return False
    return True
