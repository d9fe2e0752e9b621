"""The engine interface: what every inference backend implements, and the registry that picks one.

An engine owns a set of loaded models (`Served`, by name) and answers two kinds of callers:
- batch callers (`tuneforge generate`, `tuneforge eval`, generation metrics during training, the export
  check) hand it many prompts at once and wait for all of them: `generate`;
- interactive callers (chat, the app, the server) `submit` one request at a time with a sink that is
  called with each piece of streamed text, and may `cancel` it; these need `start` first, `stop` after.

A backend is one module under `tuneforge.infer.engines` whose engine class takes `(served, limits)`;
adding one (vLLM, or GRPO's rollouts during training) is that module, one line in `ENGINES` below and its
name in `serve.backend`. Today's is `transformers`.

    engine = build_engine(load_models(paths), config.serve).start()
    job = engine.submit("quickstart", engine.chat_ids("quickstart", messages), Decoding(), sink=print)
    ids = engine_for(loaded).generate(prompts, decoding=Decoding(max_new_tokens=64))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tuneforge.config.schema import ServeConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.shapes import Message
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.load import LoadedRun, Served, active_adapter, served_entry
from tuneforge.infer.requests import Event


class Request(Protocol):
    """A submitted request, as its caller holds it."""

    deadline: float  # time.monotonic() after which the engine ends it with finish_reason "timeout"
    finished: bool

    def cancel(self) -> None:
        """Ask the engine to end the request at its next step (finish_reason "cancelled")."""


class Engine(Protocol):
    served: dict[str, Served]  # the models it answers for, by name
    limits: ServeConfig  # its batch size, queue length, timeout and token cap

    def generate(
        self,
        prompts: list[list[int]],
        decoding: Decoding = Decoding(),
        *,
        model: str | None = None,
        batch_size: int = 8,
        on_batch: Callable[[int], None] | None = None,
        seeds: list[int] | None = None,
    ) -> list[list[int]]:
        """The new ids after each prompt, in the prompts' order, up to and including the tokenizer's EOS
        where a row stopped there. Runs in the caller's thread, `batch_size` prompts at a time, and calls
        `on_batch(rows)` after each batch; `model` is a served name, None the first. Greedy output does
        not depend on `batch_size`. `seeds` (sampled decoding only, one per prompt): row i samples from its
        own generator, so its answer does not depend on the other rows or the batch size. Needs no
        `start`."""

    def submit(
        self, name: str, prompt_ids: list[int], decoding: Decoding, sink: Callable[[Event], None]
    ) -> Request:
        """Queue one request for model `name`. `sink` gets an Event for each new piece of text and a last
        one with the finish reason and token counts; it is called from the engine's thread. Raises Busy
        past `limits.max_concurrent_requests` and TuneforgeError for an empty prompt."""

    def chat_ids(self, name: str, messages: list[Message]) -> list[int]:
        """The prompt for a conversation, as training built it (the run's system prompt put first)."""

    def text_ids(self, name: str, text: str) -> list[int]:
        """The prompt for raw text, no chat template."""

    def start(self) -> Engine:
        """Start serving submitted requests; returns the engine."""

    def stop(self) -> None:
        """Stop serving; requests still queued end with finish_reason "error"."""

    def alive(self) -> bool:
        """Whether submitted requests are being served."""


def transformers_engine() -> type:
    from tuneforge.infer.engines.transformers import TransformersEngine  # torch and transformers: lazily

    return TransformersEngine


# serve.backend -> the engine class, imported when chosen (a backend may need heavy optional packages).
ENGINES: dict[str, Callable[[], type]] = {
    "transformers": transformers_engine,
}


def build_engine(served: dict[str, Served], limits: ServeConfig) -> Engine:
    """The `limits.backend` engine over these models (not started)."""
    return ENGINES[limits.backend]()(served, limits)


def engine_for(loaded: LoadedRun, name: str = "model") -> Engine:
    """A loaded run as an engine's one model, on the backend its config names."""
    return build_engine({name: loaded.served(name)}, loaded.config.serve)


def engine_for_model(model, tokenizer, limits: ServeConfig | None = None) -> Engine:
    """A model in memory (the one being trained, a bench's) as an engine's one model, named "model"."""
    served = served_entry("model", model, active_adapter(model), ChatEncoder(tokenizer), None)
    return build_engine({"model": served}, limits or ServeConfig())
