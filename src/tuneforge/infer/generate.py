"""Batched generation from a loaded run, shared by `tuneforge generate` and `tuneforge eval`.

Prompts are built by the data stage's encoder (`ChatEncoder.prompt_ids`), the same code that built the
training samples. Batches are grouped by prompt length (longest first, so a batch that does not fit
fails at once), padded on the left so every prompt ends where generation starts, and decoded with the
KV cache. Greedy by default; batched greedy output equals one-at-a-time output (tested, and compared in
bench/generate.py).

    texts = generate(loaded, [[{"role": "user", "content": "count the lines in notes.txt"}]])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tuneforge.data.shapes import Message
from tuneforge.infer.load import LoadedRun


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 128
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 42


def generate(
    loaded: LoadedRun,
    conversations: list[list[Message]],
    decoding: Decoding = Decoding(),
    console: Console | None = None,
) -> list[str]:
    """The assistant's next turn for each conversation."""
    prompts = [loaded.encoder.prompt_ids(messages) for messages in conversations]
    tokenizer = loaded.tokenizer
    with rows_progress(console, len(prompts)) as advance:
        outputs = generate_ids(
            loaded.model,
            prompts,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoding=decoding,
            on_batch=advance,
        )
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outputs]


@torch.inference_mode()
def generate_ids(
    model: torch.nn.Module,
    prompts: list[list[int]],
    *,
    pad_token_id: int,
    eos_token_id: int,
    decoding: Decoding = Decoding(),
    on_batch: Callable[[int], None] = lambda rows: None,
) -> list[list[int]]:
    """The new ids after each prompt, in the prompts' order."""
    device = next(model.parameters()).device
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    outputs: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), decoding.batch_size):
        chosen = order[start : start + decoding.batch_size]
        batch = [prompts[i] for i in chosen]
        longest = max(len(ids) for ids in batch)
        input_ids = torch.tensor(
            [[pad_token_id] * (longest - len(ids)) + ids for ids in batch], device=device
        )
        attention = torch.tensor(
            [[0] * (longest - len(ids)) + [1] * len(ids) for ids in batch], device=device
        )
        sampling = (
            {"temperature": decoding.temperature, "top_p": decoding.top_p} if decoding.do_sample else {}
        )
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=decoding.max_new_tokens,
            do_sample=decoding.do_sample,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            use_cache=True,
            **sampling,
        )
        for i, row in zip(chosen, generated[:, longest:].tolist()):
            outputs[i] = row[: row.index(eos_token_id) + 1] if eos_token_id in row else row
        on_batch(len(chosen))
    return outputs


class rows_progress:  # noqa: N801 - used as a context manager, reads like a statement
    """A progress bar with rows/s while generating; nothing when there is no console."""

    def __init__(self, console: Console | None, total: int):
        self.console, self.total = console, total
        self.progress: Progress | None = None

    def __enter__(self) -> Callable[[int], None]:
        if self.console is None:
            return lambda rows: None
        self.progress = Progress(
            TextColumn("[bold]generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        task = self.progress.add_task("generate", total=self.total, rate="")
        started = time.perf_counter()

        def advance(rows: int) -> None:
            self.progress.advance(task, rows)
            done = self.progress.tasks[0].completed
            self.progress.update(task, rate=f"{done / max(time.perf_counter() - started, 1e-9):.1f} rows/s")

        return advance

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
