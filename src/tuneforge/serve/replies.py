"""Turning an engine's events into OpenAI replies: one whole body, or server-sent chunks.

A chat answer is taken apart as `data.tool_format` reads the template's format: a reasoning trace goes to
`reasoning_content`, never into `content`; when the request offered tools, calls the model wrote go to
`tool_calls` (arguments as a JSON string, as OpenAI sends them) with finish_reason "tool_calls". Streamed,
the trace and the text arrive piece by piece and each call in one chunk once the answer has ended: the
pieces add up to the whole reply (tests/test_serve_tools.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request

from tuneforge.data.tool_format import AnswerStream
from tuneforge.infer.requests import Event
from tuneforge.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    Chunk,
    Completion,
    Delta,
    FunctionCall,
    StreamError,
    StreamErrorBody,
    TextChoice,
    TextChunkChoice,
    ToolCallDelta,
    ToolCallOut,
    Usage,
    now,
)


@dataclass(frozen=True)
class Reply:
    """What a reply is made of besides the events: its id, model, endpoint and how its text is read."""

    ident: str
    model: str
    chat: bool
    tools: bool = False  # the request offered tools: calls are parsed out of the answer
    opened: bool = False  # the prompt opened a reasoning trace: the answer starts inside it
    usage: bool = False  # stream_options.include_usage

    def reader(self) -> AnswerStream:
        return AnswerStream(self.tools, self.opened)

    def chunk(self, delta: Delta | str | None, reason: str | None) -> str:
        if self.chat:
            choice = ChatChunkChoice(delta=delta or Delta(), finish_reason=reason)
        else:
            choice = TextChunkChoice(text=delta or "", finish_reason=reason)
        return event_line(self.body([choice]))

    def body(self, choices: list, usage: Usage | None = None) -> Chunk:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return Chunk(
            id=self.ident, object=kind, created=now(), model=self.model, choices=choices, usage=usage
        )


async def next_event(events: asyncio.Queue, job, request: Request | None) -> Event:
    """The job's next event; a client that disconnected, or an engine that stopped answering past the
    request's deadline, ends the wait instead of hanging it."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), timeout=1.0)
        except TimeoutError:
            if request is not None and await request.is_disconnected():
                job.cancel()
            if time.monotonic() > job.deadline + 60:
                return Event("", "timeout")


def usage_of(event: Event) -> Usage:
    total = event.prompt_tokens + event.completion_tokens
    return Usage(
        prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens, total_tokens=total
    )


def finish_reason(event: Event, calls: list[dict] | None = None) -> str:
    if event.finish_reason in ("length", "timeout", "cancelled"):
        return "length"
    return "tool_calls" if calls else "stop"


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def arguments_text(call: dict) -> str:
    return json.dumps(call["arguments"], ensure_ascii=False)


def whole_response(reply: Reply, text: str, last: Event) -> Completion:
    if not reply.chat:
        choice = TextChoice(finish_reason=finish_reason(last), text=text)
    else:
        reader = reply.reader()
        reader.feed(text)
        calls = reader.finish()[2]
        reasoning, content = reader.sent_reasoning, reader.sent_content  # all of them, once finished
        tool_calls = [
            ToolCallOut(id=call_id(), function=FunctionCall(name=c["name"], arguments=arguments_text(c)))
            for c in calls or ()
        ]
        message = AssistantMessage(
            content=content if content or not calls else None,
            tool_calls=tool_calls or None,
            reasoning_content=reasoning or None,
        )
        choice = ChatChoice(finish_reason=finish_reason(last, calls), message=message)
    kind = "chat.completion" if reply.chat else "text_completion"
    return Completion(
        id=reply.ident, object=kind, created=now(), model=reply.model, choices=[choice], usage=usage_of(last)
    )


def event_line(body) -> str:
    return f"data: {json.dumps(body.model_dump())}\n\n"


def text_chunks(reply: Reply, reasoning: str, content: str) -> list[str]:
    if not reply.chat:
        return [reply.chunk(content, None)] if content else []
    parts = [Delta(reasoning_content=reasoning)] if reasoning else []
    return [reply.chunk(d, None) for d in parts + ([Delta(content=content)] if content else [])]


def call_chunks(reply: Reply, calls: list[dict] | None) -> list[str]:
    deltas = [
        ToolCallDelta(
            index=i, id=call_id(), function=FunctionCall(name=c["name"], arguments=arguments_text(c))
        )
        for i, c in enumerate(calls or ())
    ]
    return [reply.chunk(Delta(tool_calls=[d]), None) for d in deltas]


def error_line(event: Event) -> str:
    timeout = event.finish_reason == "timeout"
    message = "the request ran past serve.request_timeout_s" if timeout else event.error
    return event_line(StreamErrorBody(error=StreamError(message=message, type=event.finish_reason)))


async def stream(job, events: asyncio.Queue, reply: Reply) -> AsyncIterator[str]:
    reader = reply.reader() if reply.chat else None
    try:
        if reply.chat:
            yield reply.chunk(Delta(role="assistant", content=""), None)
        while True:
            event = await next_event(events, job, None)
            pieces = reader.feed(event.delta) if reader else ("", event.delta)
            for line in text_chunks(reply, *pieces):
                yield line
            if event.finish_reason in ("timeout", "error"):
                yield error_line(event)
                break
            if event.finish_reason is not None:
                reasoning, content, calls = reader.finish() if reader else ("", "", None)
                for line in text_chunks(reply, reasoning, content) + call_chunks(reply, calls):
                    yield line
                yield reply.chunk(None, finish_reason(event, calls))
                if reply.usage:
                    yield event_line(reply.body([], usage_of(event)))
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()  # a client that went away stops its row at the next step
