"""HTTP routes of the OpenAI-compatible server: /v1/models, /v1/chat/completions, /v1/completions, /health.

Every error is OpenAI's JSON shape `{"error": {"message", "type", "param", "code"}}`: 401 for a missing or
wrong key (compared in constant time), 404 for an unknown model, 400 for a body that does not validate or
a prompt over the limits, 429 when the engine is full, 504 when a request runs past its timeout.
With a key, the docs (/docs, /redoc, /openapi.json) need it too: the schema names the served models.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.data.agent import Conversation, row_tools, tools_of
from tuneforge.data.shapes import message_turn
from tuneforge.errors import TuneforgeError
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import Engine
from tuneforge.infer.requests import Busy, Event
from tuneforge.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorBody,
    ErrorDetail,
    Health,
    ModelCard,
    ModelList,
    Sampling,
    completion_id,
    now,
)
from tuneforge.serve.replies import Reply, next_event, stream, whole_response

DOCS = ("/openapi.json", "/docs", "/redoc")


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, kind: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code


def error_response(status: int, message: str, kind: str, param=None, code=None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def key_matches(given: str, api_key: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), api_key.encode())


def check_key(request: Request) -> None:
    api_key = request.app.state.api_key
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key_matches(given, api_key):
        raise ApiError(
            401,
            "missing or wrong API key (Authorization: Bearer KEY)",
            "invalid_request_error",
            code="invalid_api_key",
        )


def check_docs_key(request: Request) -> None:
    """The docs take the key as the API does, or as a browser's login (any user name, the key as password),
    which a browser asks for and then sends with the schema request the docs page makes itself."""
    api_key = request.app.state.api_key
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given.strip(), validate=True).decode().partition(":")[2]
        except ValueError:  # not base64, or not UTF-8
            given = ""
    if scheme.lower() not in ("bearer", "basic") or not key_matches(given, api_key):
        raise ApiError(
            401,
            "the API docs need the key: Authorization: Bearer KEY; in a browser, any user name and the key "
            "as password",
            "invalid_request_error",
            code="invalid_api_key",
        )


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    reply = error_response(exc.status, exc.message, exc.kind, exc.param, exc.code)
    if exc.status == 401 and request.url.path in DOCS:
        reply.headers["WWW-Authenticate"] = 'Basic realm="tuneforge API docs"'  # a browser asks for it
    return reply


async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
    if first.get("type") == "json_invalid":  # its loc is a character position, not a field
        reason = first.get("ctx", {}).get("error", "")
        return error_response(400, f"the body is not valid JSON: {reason}", "invalid_request_error")
    # pydantic names the member of a union it tried ("function-after[utf8_text(), str]"): not a field
    fields = [str(part) for part in first.get("loc", ())[1:] if "[" not in str(part)]
    param = ".".join(fields) or None
    return error_response(400, f"{param or 'body'}: {first.get('msg')}", "invalid_request_error", param)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), "invalid_request_error")


def health(request: Request) -> Health:
    engine = request.app.state.engine
    return Health(status="ok" if engine.alive() else "engine stopped", models=list(engine.served))


def models(request: Request) -> ModelList:
    created = request.app.state.created
    return ModelList(data=[ModelCard(id=name, created=created) for name in request.app.state.engine.served])


async def chat(request: Request, body: ChatCompletionRequest):
    engine = request.app.state.engine
    check_model(engine, body.model)
    messages = conversation_of(body)
    structured = [m["tool_calls"] for m in messages if m.get("tool_calls")] + (tools_of(messages) or [])
    check_chars(
        engine, sum(len(m["content"]) for m in messages) + (len(json.dumps(structured)) if structured else 0)
    )
    try:
        ids = engine.chat_ids(body.model, messages)
    except TuneforgeError as exc:  # a conversation the model's template refuses to render
        raise ApiError(400, str(exc), "invalid_request_error", "messages") from None
    return await answer(request, body, ids, body.max_completion_tokens or body.max_tokens, chat=True)


async def complete(request: Request, body: CompletionRequest):
    engine = request.app.state.engine
    check_model(engine, body.model)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise ApiError(400, "prompt: one string per request", "invalid_request_error", "prompt")
    check_chars(engine, len(prompts[0]))
    return await answer(request, body, engine.text_ids(body.model, prompts[0]), body.max_tokens, chat=False)


def conversation_of(body: ChatCompletionRequest) -> list:
    """The request's messages and tools as training read them (data.shapes): arguments that are not a JSON
    object, a tool result with no call to answer, are a 400 naming the message."""
    try:
        turns = [
            message_turn(m.model_dump(exclude_none=True), f"messages.{i}")
            for i, m in enumerate(body.messages)
        ]
        tools = row_tools([t.model_dump(exclude_none=True) for t in body.tools or ()], "tools")
        return Conversation(turns, tools)
    except TuneforgeError as exc:
        raise ApiError(400, str(exc), "invalid_request_error", "messages") from None


def build_app(engine: Engine, api_key: str | None) -> FastAPI:
    # FastAPI's own docs routes take no dependencies: add_docs adds them again, behind the key.
    app = FastAPI(
        title="tuneforge",
        description="OpenAI-compatible API for tuneforge runs",
        version="1",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine, app.state.api_key, app.state.created = engine, api_key, now()
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, bad_body)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.get("/health")(health)
    keyed = [Depends(check_key)]
    app.get("/v1/models", dependencies=keyed)(models)
    app.post("/v1/chat/completions", dependencies=keyed)(chat)
    app.post("/v1/completions", dependencies=keyed)(complete)
    add_docs(app, engine)
    return app


def add_docs(app: FastAPI, engine: Engine) -> None:
    """/openapi.json, /docs and /redoc, which need the key when the API does: the schema names the served
    models (FastAPI's documented way to extend it), so clients and schema-driven testers see which `model`
    values exist."""

    def openapi_with_models() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for body in ("ChatCompletionRequest", "CompletionRequest"):
                schema["components"]["schemas"][body]["properties"]["model"]["enum"] = list(engine.served)
            app.openapi_schema = schema
        return app.openapi_schema

    def schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=DOCS[0], title=f"{app.title} - Swagger UI")

    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=DOCS[0], title=f"{app.title} - ReDoc")

    app.openapi = openapi_with_models
    for path, page in zip(DOCS, (schema, swagger, redoc)):
        app.get(path, dependencies=[Depends(check_docs_key)], include_in_schema=False)(page)


def check_model(engine: Engine, name: str) -> None:
    if name not in engine.served:
        known = ", ".join(engine.served)
        raise ApiError(
            404,
            f"model {name!r} does not exist; served: {known}",
            "invalid_request_error",
            "model",
            "model_not_found",
        )


def check_chars(engine: Engine, chars: int) -> None:
    if chars > engine.limits.max_prompt_chars:
        raise ApiError(
            400,
            f"the prompt has {chars} characters; this server accepts {engine.limits.max_prompt_chars} "
            "(serve.max_prompt_chars)",
            "invalid_request_error",
            "messages",
            "context_length_exceeded",
        )


def decoding_of(engine: Engine, body: Sampling, ids: list[int], limit: int | None) -> Decoding:
    cap = engine.limits.max_new_tokens
    if limit is not None and limit > cap:
        raise ApiError(
            400,
            f"max_tokens {limit} is over this server's cap of {cap} (serve.max_new_tokens)",
            "invalid_request_error",
            "max_tokens",
        )
    context = engine.served[body.model].context
    room = cap if context is None else min(cap, context - len(ids))
    wanted = limit or room  # no max_tokens: as much as the context leaves, up to the cap
    if not ids:
        raise ApiError(400, "the prompt is empty", "invalid_request_error", "prompt")
    if context is not None and (wanted < 1 or len(ids) + wanted > context):
        raise ApiError(
            400,
            f"the prompt is {len(ids)} tokens and max_tokens {wanted}; the model's context is {context} tokens",
            "invalid_request_error",
            "messages",
            "context_length_exceeded",
        )
    return Decoding(
        max_new_tokens=wanted,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_strings()),
    )


async def answer(request: Request, body: Sampling, ids: list[int], limit: int | None, chat: bool):
    engine = request.app.state.engine
    decoding = decoding_of(engine, body, ids, limit)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event] = asyncio.Queue()
    try:
        job = engine.submit(
            body.model, ids, decoding, lambda e: loop.call_soon_threadsafe(events.put_nowait, e)
        )
    except Busy as exc:
        raise ApiError(429, f"the server is busy: {exc}; retry shortly", "rate_limit_exceeded") from exc
    reply = Reply(
        completion_id("chatcmpl" if chat else "cmpl"),
        body.model,
        chat,
        tools=bool(getattr(body, "tools", None)),
        opened=chat and engine.served[body.model].encoder.opens_trace(ids),
        usage=body.stream_options is not None and body.stream_options.include_usage,
    )
    if body.stream:
        return StreamingResponse(stream(job, events, reply), media_type="text/event-stream")
    text, last = "", None
    try:
        while last is None or last.finish_reason is None:
            last = await next_event(events, job, request)
            text += last.delta
    finally:
        job.cancel()  # a client that left frees its row at the next step
    raise_failure(last)
    return whole_response(reply, text, last)


def raise_failure(event: Event) -> None:
    if event.finish_reason == "timeout":
        raise ApiError(504, "the request ran past serve.request_timeout_s", "timeout")
    if event.finish_reason == "error":
        raise ApiError(500, f"generation failed: {event.error}", "server_error")
