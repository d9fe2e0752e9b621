"""The OpenAI wire format tuneforge serves: request and response bodies as pydantic models.

Only what the server implements is accepted: unknown fields are a 400 that names them, and the OpenAI
fields it does not implement are accepted only at their neutral values (n=1, no penalties, no logprobs),
so a client never silently gets something other than what it asked for.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_serializer

from tuneforge.data.shapes import content_text
from tuneforge.errors import TuneforgeError


def utf8_text(value: str) -> str:
    """JSON may carry a lone surrogate ("\\ud800"), which no tokenizer can encode: a 400, not a 500."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"the text holds a lone surrogate at character {exc.start}, which is not valid UTF-8"
        ) from None
    return value


Text = Annotated[str, AfterValidator(utf8_text)]


def joined_parts(value: object) -> object:
    """OpenAI clients may send a message's content as parts: text parts are joined as training joined
    them (tuneforge.data.shapes.content_text), so a served prompt is a trained prompt; other parts are a 400."""
    if not isinstance(value, list):
        return value
    try:
        return content_text(value, "content")
    except TuneforgeError as exc:
        raise ValueError(str(exc)) from None


Content = Annotated[str, BeforeValidator(joined_parts), AfterValidator(utf8_text)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(Body):
    name: str
    arguments: str = Field(description="The arguments as a JSON object in a string, as OpenAI writes them.")


class ToolCall(Body):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: Content | None = Field(None, description="null only for an assistant turn that calls tools.")
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    reasoning_content: Text | None = None


class FunctionSpec(Body):
    name: str
    description: str | None = None
    parameters: dict | None = Field(None, description="The arguments' JSON schema.")
    strict: bool | None = None


class ToolSpec(Body):
    type: Literal["function"]
    function: FunctionSpec


class StreamOptions(Body):
    include_usage: bool = False


class Sampling(Body):
    """The generation fields both endpoints share."""

    model: str = Field(description="A name from GET /v1/models: a run's adapter, an export, or the base.")
    max_tokens: int | None = Field(None, ge=1, description="Most new tokens; default and cap: the server's.")
    temperature: float = Field(1.0, ge=0, le=2, description="0 is greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = Field(
        None, description="Up to 4 strings that end the answer."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Makes sampling repeatable.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    presence_penalty: Literal[0] = 0
    frequency_penalty: Literal[0] = 0
    logprobs: Literal[False] | None = None
    user: str | None = None

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="The newer name of max_tokens.")
    tools: list[ToolSpec] | None = Field(
        None, description="Functions the model may call: rendered by its chat template, calls parsed back."
    )
    tool_choice: Literal["auto"] | None = Field(
        None, description="auto only: a model trained to call tools decides; none cannot be enforced."
    )
    parallel_tool_calls: bool | None = None


class CompletionRequest(Sampling):
    prompt: Text | list[Text] = Field(description="Raw text, no chat template; a list must hold one string.")
    echo: Literal[False] = False


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tuneforge"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class StreamError(BaseModel):
    """An error after a stream has begun: only message and type, as OpenAI's streams send it."""

    message: str | None
    type: str


class StreamErrorBody(BaseModel):
    error: StreamError


class Health(BaseModel):
    status: str
    models: list[str]


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    reasoning_content: str | None = None

    @model_serializer(mode="wrap")
    def _present(self, handler) -> dict:
        # content may be null (a turn that only calls tools); calls and a trace appear when there are some
        body = handler(self)
        return {k: v for k, v in body.items() if v is not None or k == "content"}


class ChatChoice(BaseModel):
    index: int = 0
    finish_reason: str
    message: AssistantMessage


class TextChoice(BaseModel):
    index: int = 0
    finish_reason: str
    text: str
    logprobs: None = None


class Completion(BaseModel):
    """A whole answer: chat.completion or text_completion."""

    id: str
    object: Literal["chat.completion", "text_completion"]
    created: int
    model: str
    choices: list[ChatChoice | TextChoice]
    usage: Usage


class ToolCallDelta(BaseModel):
    index: int
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer(mode="wrap")
    def _only_present(self, handler) -> dict:
        # A chunk's delta carries only what changed: the role once, then a trace, content or calls.
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None


class TextChunkChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: str | None


class Chunk(BaseModel):
    """One server-sent event of a streamed answer; the last, when asked for, has no choices and the usage."""

    id: str
    object: Literal["chat.completion.chunk", "text_completion"]
    created: int
    model: str
    choices: list[ChatChunkChoice | TextChunkChoice]
    usage: Usage | None = None

    @model_serializer(mode="wrap")
    def _usage_when_given(self, handler) -> dict:
        body = handler(self)
        if body["usage"] is None:
            del body["usage"]
        return body


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())
