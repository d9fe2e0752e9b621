"""Config section `serve`: the engine and limits of `tuneforge serve`, `app` and `chat`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.config.section import Section


class ServeConfig(Section):
    """Engine and limits of `tuneforge serve`, `app` and `chat` (read from the first model's run config;
    change them with --set serve.KEY=VALUE)."""

    backend: Literal["transformers"] = Field(
        "transformers",
        description="The inference engine that generates (the registry in tuneforge/infer/engine.py): transformers' "
        "generate, batched. Also used by `tuneforge generate`, `eval` and the export check.",
    )
    max_concurrent_requests: int = Field(
        256, ge=1, description="Requests queued or running at once; more get HTTP 429."
    )
    max_batch_size: int = Field(16, ge=1, description="Requests generated together in one batch.")
    batch_wait_ms: int = Field(
        10, ge=0, le=1000, description="How long the engine waits for requests to join a batch."
    )
    mix_adapters: bool = Field(
        True,
        description="Requests for different LoRA adapters of one base (and the base) share a batch, each row "
        "through its own adapter (peft's adapter_names); false: one adapter per batch. DoRA adapters never mix.",
    )
    max_new_tokens: int = Field(512, ge=1, description="Default and cap of a request's max_tokens.")
    max_prompt_chars: int = Field(
        32_000, ge=1, description="Longest prompt (all message texts together) accepted, in characters."
    )
    request_timeout_s: float = Field(
        300, gt=0, description="A request still generating after this many seconds ends with an error."
    )
