"""The generation engine behind `serve`, `app` and `chat`: one worker thread owns the weights.

Requests queue up; the worker takes the oldest and every other waiting request that can share its batch
(same weights and adapter, same decoding; a request with a seed runs alone, so its samples repeat), pads
them on the left and runs one `generate`. A stopping criterion called after every step streams each row's
new text to its request, and ends a row at its EOS, its stop strings, its token budget, its deadline or
its cancellation, while the rest of the batch goes on. Nothing else touches the model, so requests never
run concurrently on the same weights, and an error in one batch fails that batch's requests only.

    engine = Engine(load_models(paths), ServeConfig()); engine.start()
    job = engine.submit("quickstart", engine.chat_ids("quickstart", messages), Decoding(), sink=print)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field

import torch
from peft import PeftModel
from transformers import StoppingCriteria, StoppingCriteriaList

from tuneforge.config.schema import ServeConfig
from tuneforge.errors import TuneforgeError
from tuneforge.serve.models import Served


class Busy(TuneforgeError):
    """More requests in flight than serve.max_concurrent_requests."""


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def sampled(self) -> bool:
        """Temperatures this close to 0 are greedy: dividing logits by 1e-200 overflows to inf and NaN."""
        return self.temperature >= 1e-3


@dataclass
class Event:
    """What the worker tells a request: new text, and at the end why it stopped and the token counts."""

    delta: str
    finish_reason: str | None = None  # stop, length, timeout, cancelled, error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass(eq=False)
class Job:
    served: Served
    prompt_ids: list[int]
    decoding: Decoding
    sink: Callable[[Event], None]
    deadline: float
    ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the answer already streamed
    finished: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)

    def batch_key(self) -> tuple:
        d = self.decoding
        sampling = (d.temperature, d.top_p, id(self) if d.seed is not None else None) if d.sampled else ()
        return (self.served.weights, self.served.adapter, *sampling)

    def cancel(self) -> None:
        self.cancelled.set()

    def step(self, token: int) -> bool:
        """Take one new token; returns True when the answer is complete."""
        if token in self.served.stop_ids:
            return self.finish("stop", self.ids + [token])
        self.ids.append(token)
        text = self.text()
        found = [text.index(stop) for stop in self.decoding.stop if stop in text]
        if found:
            return self.finish("stop", self.ids, cut=min(found))
        if len(self.ids) >= self.decoding.max_new_tokens:
            return self.finish("length", self.ids)
        if self.cancelled.is_set():
            return self.finish("cancelled", self.ids)
        if time.monotonic() > self.deadline:
            return self.finish("timeout", self.ids)
        ready = streamable(text, self.decoding.stop)
        if ready > self.sent:
            self.sink(Event(text[self.sent : ready]))
            self.sent = ready
        return False

    def text(self) -> str:
        """The answer so far, as `generate` decodes it (special tokens out, leading space dropped)."""
        return self.served.encoder.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()

    def finish(
        self, reason: str, produced: list[int], cut: int | None = None, error: str | None = None
    ) -> bool:
        if self.finished:
            return True
        self.finished = True
        text = self.text()[:cut].rstrip() if cut is not None else self.text().rstrip()
        self.sink(Event(text[self.sent :], reason, len(self.prompt_ids), len(produced), error))
        return True


def streamable(text: str, stops: tuple[str, ...]) -> int:
    """How much of the text can be sent now: not the start of a stop string that the next tokens may
    complete, not trailing whitespace (the final answer is stripped), not a half-decoded character."""
    end = len(text)
    for stop in stops:
        for size in range(min(len(stop) - 1, end), 0, -1):
            if text.endswith(stop[:size]):
                end = min(end, len(text) - size)
                break
    ready = text[:end].rstrip()
    return len(ready) - 1 if ready.endswith("\ufffd") else len(ready)


class StreamEachStep(StoppingCriteria):
    """Called by `generate` after every step: hands each row its new token, says which rows are done."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = [
            job.finished or job.step(int(token)) for job, token in zip(self.jobs, input_ids[:, -1].tolist())
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class Engine:
    def __init__(self, served: dict[str, Served], limits: ServeConfig):
        self.served = served
        self.limits = limits
        self._pending: list[Job] = []
        self._in_flight = 0
        self._lock = threading.Condition()
        self._closing = False
        self._worker = threading.Thread(target=self._loop, name="tuneforge-engine", daemon=True)

    def start(self) -> Engine:
        self._worker.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._closing = True
            pending, self._pending = self._pending, []
            self._lock.notify_all()
        for job in pending:
            job.finish("error", [], error="the server is shutting down")

    def alive(self) -> bool:
        return self._worker.is_alive()

    def chat_ids(self, name: str, messages: list[dict]) -> list[int]:
        served = self.served[name]
        if served.system_prompt and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": served.system_prompt}, *messages]
        return served.encoder.prompt_ids(messages)

    def text_ids(self, name: str, text: str) -> list[int]:
        return self.served[name].encoder.text_prompt_ids(text)

    def submit(
        self, name: str, prompt_ids: list[int], decoding: Decoding, sink: Callable[[Event], None]
    ) -> Job:
        if not prompt_ids:
            raise TuneforgeError("the prompt is empty")
        served = self.served[name]
        timeout = self.limits.request_timeout_s
        job = Job(served, prompt_ids, decoding, self._counted(sink), time.monotonic() + timeout)
        with self._lock:
            if self._in_flight >= self.limits.max_concurrent_requests:
                raise Busy(f"{self._in_flight} requests in flight, the limit (serve.max_concurrent_requests)")
            self._in_flight += 1
            self._pending.append(job)
            self._lock.notify()
        return job

    def _counted(self, sink: Callable[[Event], None]) -> Callable[[Event], None]:
        def deliver(event: Event) -> None:
            if event.finish_reason is not None:
                with self._lock:
                    self._in_flight -= 1
            with suppress(Exception):  # a listener that went away must not stop the worker
                sink(event)

        return deliver

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
            time.sleep(self.limits.batch_wait_ms / 1000)  # requests arriving together share the batch
            batch = self._take_batch()
            try:
                if batch:
                    self._generate(batch)
            except BaseException as exc:  # noqa: BLE001 - one failed batch must not stop the server
                for job in batch:
                    job.finish("error", job.ids, error=f"{type(exc).__name__}: {exc}")
                if not isinstance(exc, Exception):
                    raise

    def _take_batch(self) -> list[Job]:
        """The oldest request and those that can share its batch; ones whose client left or whose time ran
        out while they waited are finished here, before they cost a prefill."""
        with self._lock:
            if not self._pending:
                return []
            key = self._pending[0].batch_key()
            batch = [job for job in self._pending if job.batch_key() == key][: self.limits.max_batch_size]
            self._pending = [job for job in self._pending if job not in batch]
        now = time.monotonic()
        for job in list(batch):
            if job.cancelled.is_set() or now > job.deadline:
                job.finish("cancelled" if job.cancelled.is_set() else "timeout", [])
                batch.remove(job)
        return batch

    @torch.inference_mode()
    def _generate(self, jobs: list[Job]) -> None:
        first = jobs[0]
        model, pad = first.served.model, first.served.encoder.tokenizer.pad_token_id
        longest = max(len(job.prompt_ids) for job in jobs)
        device = next(model.parameters()).device
        input_ids = torch.tensor(
            [[pad] * (longest - len(j.prompt_ids)) + j.prompt_ids for j in jobs], device=device
        )
        attention = torch.tensor(
            [[0] * (longest - len(j.prompt_ids)) + [1] * len(j.prompt_ids) for j in jobs]
        )
        decoding = first.decoding
        sampling = {"do_sample": False}
        if decoding.sampled:
            sampling = {"do_sample": True, "temperature": decoding.temperature, "top_p": decoding.top_p}
            if decoding.seed is not None:
                torch.manual_seed(decoding.seed)  # reseeded from the OS below, so later requests stay random
        with adapter_active(model, first.served.adapter):
            model.generate(
                input_ids=input_ids,
                attention_mask=attention.to(device),
                max_new_tokens=max(job.decoding.max_new_tokens for job in jobs),
                eos_token_id=first.served.stop_ids,
                pad_token_id=pad,
                stopping_criteria=StoppingCriteriaList([StreamEachStep(jobs)]),
                use_cache=True,
                **sampling,
            )
        if decoding.sampled and decoding.seed is not None:
            torch.seed()
        for job in jobs:
            job.finish("length", job.ids)


def adapter_active(model, adapter: str | None):
    if not isinstance(model, PeftModel):
        return nullcontext()
    if adapter is None:
        return model.disable_adapter()
    model.set_adapter(adapter)
    return nullcontext()
