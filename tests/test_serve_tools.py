"""Answers taken apart into a reasoning trace, text and tool calls (data/tool_format.py), whole and streamed
(serve/replies.py): whatever pieces the engine sends, the streamed reply adds up to the whole one, a trace
never reaches `content`, and calls arrive as OpenAI `tool_calls` with finish_reason "tool_calls". The real
server with a model trained to call tools, asked with the official `openai` client, is in
tests/test_agent_example.py."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tuneforge.data.tool_format import AnswerStream, render_calls, split_answer
from tuneforge.infer.requests import Event
from tuneforge.serve.replies import Reply, stream, whole_response

words = st.text(alphabet="ab <>/_{}\n", max_size=12)
calls = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["f", "g_h"]),
            "arguments": st.dictionaries(st.sampled_from("xyz"), st.integers()),
        }
    ),
    max_size=2,
)


def answer_text(reasoning: str | None, content: str, made: list[dict], opened: bool) -> str:
    trace = "" if reasoning is None else ("" if opened else "<think>") + f"\n{reasoning}\n</think>\n\n"
    return trace + "\n".join(part for part in (content, render_calls(made)) if part)


def cut(text: str, sizes: list[int]) -> list[str]:
    pieces, at = [], 0
    for size in sizes:
        pieces.append(text[at : at + size])
        at += size
    return [*pieces, text[at:]]


def streamed(pieces: list[str], reply: Reply) -> dict:
    """What a client assembles from the chunks: trace, content, calls, finish reason."""

    async def collect() -> list[str]:
        events: asyncio.Queue = asyncio.Queue()
        for piece in pieces[:-1]:
            events.put_nowait(Event(piece))
        events.put_nowait(Event(pieces[-1], "stop", 3, 4))
        job = type("Job", (), {"deadline": float("inf"), "cancel": lambda self: None})()
        return [line async for line in stream(job, events, reply)]

    got = {"reasoning": "", "content": "", "calls": [], "finish": None}
    for line in asyncio.run(collect())[:-1]:
        choice = json.loads(line.removeprefix("data: "))["choices"][0]
        delta = choice["delta"]
        got["reasoning"] += delta.get("reasoning_content", "")
        got["content"] += delta.get("content", "")
        got["calls"] += delta.get("tool_calls", [])
        got["finish"] = choice["finish_reason"] or got["finish"]
    return got


@settings(max_examples=150, deadline=None)
@given(
    reasoning=st.none() | words,
    content=words,
    made=calls,
    opened=st.booleans(),
    tools=st.booleans(),
    sizes=st.lists(st.integers(0, 7), max_size=30),
)
def test_streamed_reply_adds_up_to_the_whole_reply(reasoning, content, made, opened, tools, sizes):
    text = answer_text(reasoning, content, made, opened and reasoning is not None)
    reply = Reply("chatcmpl-x", "m", chat=True, tools=tools, opened=opened and reasoning is not None)
    whole = whole_response(reply, text, Event("", "stop", 3, 4)).model_dump()["choices"][0]
    got = streamed(cut(text, sizes), reply)
    message = whole["message"]
    assert got["reasoning"] == (message.get("reasoning_content") or "")
    assert got["content"] == (message["content"] or "")
    assert [c["function"] for c in got["calls"]] == [c["function"] for c in message.get("tool_calls", [])]
    assert got["finish"] == whole["finish_reason"]
    if "<" in (reasoning or "") + content:
        return  # text that holds tag characters: the sums above are what must hold
    assert message.get("reasoning_content") == ((reasoning or "").strip() or None)  # apart, not in content
    if tools and made:
        assert whole["finish_reason"] == "tool_calls" and message["content"] == (content.strip() or None)
        assert [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]] == [
            c["arguments"] for c in made
        ]
    else:
        assert message["content"] == "\n".join(p for p in (content, render_calls(made)) if p).strip()


def test_calls_are_parsed_only_when_the_request_offers_tools():
    text = 'Let me look.\n<tool_call>\n{"name": "count_lines", "arguments": {"path": "a.txt"}}\n</tool_call>'
    assert split_answer(text).calls == [{"name": "count_lines", "arguments": {"path": "a.txt"}}]
    assert split_answer(text).content == "Let me look."
    assert split_answer(text, tools=False).content == text
    offered = whole_response(Reply("i", "m", chat=True, tools=True), text, Event("", "stop")).choices[0]
    assert offered.finish_reason == "tool_calls" and offered.message.content == "Let me look."
    assert json.loads(offered.message.tool_calls[0].function.arguments) == {"path": "a.txt"}
    plain = whole_response(Reply("i", "m", chat=True), text, Event("", "stop")).choices[0]
    assert (
        plain.finish_reason == "stop" and plain.message.content == text and plain.message.tool_calls is None
    )


def test_a_call_that_does_not_parse_is_returned_as_written():
    text = "<tool_call>\n{not json}\n</tool_call>"
    choice = whole_response(Reply("i", "m", chat=True, tools=True), text, Event("", "stop")).choices[0]
    assert choice.finish_reason == "stop" and choice.message.content == text


def test_a_cut_off_answer_ends_with_length_even_inside_a_call():
    text = '<tool_call>\n{"name": "f", "argu'
    choice = whole_response(Reply("i", "m", chat=True, tools=True), text, Event("", "length")).choices[0]
    assert choice.finish_reason == "length" and choice.message.content == text


def test_a_trace_the_prompt_opened_is_read_from_the_first_token():
    assert split_answer("sum it</think>4", opened=True).reasoning == "sum it"
    assert split_answer("sum it</think>4").reasoning is None  # a lone closing tag is text otherwise
    stream_ = AnswerStream(tools=False, opened=True)
    assert stream_.feed("sum") == ("sum", "")
    assert stream_.feed(" it</thi") == (" it", "")
    assert stream_.feed("nk>4") == ("", "4")
