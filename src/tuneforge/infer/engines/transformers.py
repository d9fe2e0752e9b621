"""The transformers engine, the first implementation of `tuneforge.infer.engine.Engine`.

Batch callers (`generate`) get their prompts grouped by length, padded on the left, and decoded with the
KV cache, `batch_size` at a time, in their own thread; batched greedy output equals one-at-a-time output
(tests/test_batched_generation.py, bench/generate.py).

Submitted requests queue up; one worker thread owns the weights and takes the oldest and every other
waiting request that can share its batch (same weights, same sampling settings; a request with a seed
runs alone, so its samples repeat), pads them on the left and runs one `generate`. Requests for different
LoRA adapters of one base (and for the base itself) share a batch when the oldest request's adapter
fills less than half of it: peft runs each row through its own adapter (`adapter_names`), so a server of many
adapters with a few requests each batches them together (serve.mix_adapters; bench/serve_load.py
--adapters 4). A stopping criterion
called after every step hands each row its new token (`Job.step`), and ends a row at its EOS, its stop
strings, its token budget, its deadline or its cancellation, while the rest of the batch goes on. Nothing
else touches the model while serving, so requests never run concurrently on the same weights, and an
error in one batch fails that batch's requests only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress

import torch
from peft import PeftModel, PeftType
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from tuneforge.config.schema import ServeConfig
from tuneforge.data.agent import Conversation, tools_of
from tuneforge.errors import TuneforgeError
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.load import Served
from tuneforge.infer.requests import Busy, Event, Job
from tuneforge.infer.row_sampling import RowSeededSampler
from tuneforge.run.cpu import cpu_share

BASE = "__base__"  # peft's name for no adapter in `adapter_names`


class StreamEachStep(StoppingCriteria):
    """Called by `generate` after every step: hands each row its new token, says which rows are done."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = [
            job.finished or job.step(int(token)) for job, token in zip(self.jobs, input_ids[:, -1].tolist())
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    """The engine on transformers' `generate` (see the module docstring); implements infer.engine.Engine."""

    def __init__(self, served: dict[str, Served], limits: ServeConfig):
        self.served = served
        self.limits = limits
        self._pending: list[Job] = []
        self._in_flight = 0
        self._lock = threading.Condition()
        self._closing = False
        # A batch call while the worker serves must not run on the same weights (or switch their adapter).
        self._weights = threading.Lock()
        self._worker = threading.Thread(target=self._loop, name="tuneforge-engine", daemon=True)

    def start(self) -> TransformersEngine:
        self._worker.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._closing = True
            pending, self._pending = self._pending, []
            self._lock.notify_all()
        for job in pending:
            job.finish("error", [], error="the server is shutting down")

    @torch.inference_mode()
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
        """See Engine.generate. Longest prompts first, so a batch that does not fit fails at once; a row
        stops at the tokenizer's EOS only, as `tuneforge generate` always has."""
        if seeds is not None and (len(seeds) != len(prompts) or not decoding.sampled):
            raise ValueError("seeds: one per prompt, and only for sampled decoding")
        served = self.served[model] if model is not None else next(iter(self.served.values()))
        weights, tokenizer = served.model, served.encoder.tokenizer
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        if decoding.sampled and decoding.seed is not None:
            torch.manual_seed(decoding.seed)  # once for the whole call: rows sample as they did one call ago
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        outputs: list[list[int]] = [[] for _ in prompts]
        with self._weights, adapter_active(weights, served.adapter), cpu_share().busy():
            for start in range(0, len(order), batch_size):
                cpu_share().rebalance()
                chosen = order[start : start + batch_size]
                input_ids, attention = padded(weights, [prompts[i] for i in chosen], pad)
                generated = weights.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    max_new_tokens=decoding.max_new_tokens,
                    eos_token_id=eos,
                    pad_token_id=pad,
                    use_cache=True,
                    **sampling(decoding, None if seeds is None else [seeds[i] for i in chosen]),
                )
                for i, row in zip(chosen, generated[:, input_ids.shape[1] :].tolist()):
                    outputs[i] = row[: row.index(eos) + 1] if eos in row else row
                if on_batch is not None:
                    on_batch(len(chosen))
        return outputs

    def alive(self) -> bool:
        return self._worker.is_alive()

    def chat_ids(self, name: str, messages: list[dict]) -> list[int]:
        served = self.served[name]
        if served.system_prompt and not any(m["role"] == "system" for m in messages):
            system = {"role": "system", "content": served.system_prompt}
            messages = Conversation([system, *messages], tools_of(messages))
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
            first = self._pending[0]
            key = self.batch_key(first)
            sharing = [job for job in self._pending if self.batch_key(job) == key]
            own = [job for job in sharing if job.served.adapter == first.served.adapter]
            # Other adapters' rows join only when the oldest's adapter fills less than half the batch: peft's
            # per-row routing costs more than a batch that is already large saves (bench/serve_load.py).
            if 2 * len(own) < self.limits.max_batch_size:
                own += [job for job in sharing if job.served.adapter != first.served.adapter]
            batch = own[: self.limits.max_batch_size]
            self._pending = [job for job in self._pending if job not in batch]
        now = time.monotonic()
        for job in list(batch):
            if job.cancelled.is_set() or now > job.deadline:
                job.finish("cancelled" if job.cancelled.is_set() else "timeout", [])
                batch.remove(job)
        return batch

    def batch_key(self, job: Job) -> tuple:
        """The job's own key (weights, sampling), its stop and pad ids (a batch generates with its first
        row's), and its adapter unless adapters mix in one batch."""
        mixed = self.limits.mix_adapters and mixes_adapters(job.served.model)
        ends = (tuple(job.served.stop_ids), job.served.encoder.tokenizer.pad_token_id)
        return (*job.batch_key(), *ends, None if mixed else job.served.adapter)

    @torch.inference_mode()
    def _generate(self, jobs: list[Job]) -> None:
        first = jobs[0]
        model, pad = first.served.model, first.served.encoder.tokenizer.pad_token_id
        input_ids, attention = padded(model, [job.prompt_ids for job in jobs], pad)
        decoding = first.decoding
        if decoding.sampled and decoding.seed is not None:
            torch.manual_seed(decoding.seed)  # reseeded from the OS below, so later requests stay random
        adapters = [job.served.adapter or BASE for job in jobs]
        if len(set(adapters)) > 1:  # peft runs each row through its own adapter (or none) in one batch
            weights, rows = nullcontext(), {"adapter_names": adapters}
        else:
            weights, rows = adapter_active(model, first.served.adapter), {}
        with self._weights, weights, cpu_share().busy():
            model.generate(
                **rows,
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max(job.decoding.max_new_tokens for job in jobs),
                eos_token_id=first.served.stop_ids,
                pad_token_id=pad,
                stopping_criteria=StoppingCriteriaList([StreamEachStep(jobs)]),
                use_cache=True,
                **sampling(decoding),
            )
        if decoding.sampled and decoding.seed is not None:
            torch.seed()
        for job in jobs:
            job.finish("length", job.ids)


def mixes_adapters(model) -> bool:
    """Whether rows for different adapters of this model can share a batch: peft's per-row
    `adapter_names` serves LoRA adapters (their modules_to_save too), not DoRA."""
    if not isinstance(model, PeftModel):
        return False
    configs = model.peft_config.values()
    return all(c.peft_type == PeftType.LORA and not getattr(c, "use_dora", False) for c in configs)


def adapter_active(model, adapter: str | None):
    """The served adapter on, or all off for the base. A lone run's adapter is already the active one and is
    left alone, so a caller's own disable_adapter() (eval's base) still holds."""
    if not isinstance(model, PeftModel):
        return nullcontext()
    if adapter is None:
        return model.disable_adapter()
    if model.active_adapter != adapter:
        model.set_adapter(adapter)
    return nullcontext()


def padded(model, prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts padded on the left, so every row ends where generation starts, with their attention mask."""
    device = next(model.parameters()).device
    longest = max(len(ids) for ids in prompts)
    input_ids = torch.tensor([[pad] * (longest - len(ids)) + ids for ids in prompts], device=device)
    attention = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
    return input_ids, attention


def sampling(decoding: Decoding, seeds: list[int] | None = None) -> dict:
    """transformers' arguments for the decoding. Greedy passes no temperature or top_p: the model's
    generation_config keeps its own, exactly as before, so greedy output does not move. With `seeds`, each
    row samples from its own generator (infer/row_sampling.py)."""
    if not decoding.sampled:
        return {"do_sample": False}
    if seeds is not None:
        sampler = RowSeededSampler(seeds, decoding.temperature, decoding.top_p)
        # the model's generation_config may add a repetition penalty or n-gram ban before our sampler: GRPO
        # scores its samples under the plain tempered distribution, so they must be drawn from it
        neutral = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
        return {"do_sample": False, "logits_processor": LogitsProcessorList([sampler]), **neutral}
    return {"do_sample": True, "temperature": decoding.temperature, "top_p": decoding.top_p}
