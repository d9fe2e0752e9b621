"""CPU settings measured, not guessed: seconds per training step of tuneforge's own path on the 16M Llama
with the GPT-2 vocabulary (ChatDoctor rows, batch 4, max_length 512, LoRA r=16, selective loss), one
setting changed at a time against the default, in one process, same batches; bf16 autocast also reports
the loss difference against float32 on the same batches.

    .venv/bin/python bench/cpu_tuning.py            # needs ../shared; ~3 min on 2 cores
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from throughput import CHATDOCTOR, build_models, tuneforge_path, write_rows  # noqa: E402

STEPS, WARMUP = 8, 2


def timed(
    model_dir: Path,
    train: Path,
    *,
    attention: str = "sdpa",
    threads: int = 2,
    interop: int | None = None,
    bf16: bool = False,
    workers: int = 0,
) -> tuple[float, list[float]]:
    torch.set_num_threads(threads)
    trainer, model, _, _ = tuneforge_path(model_dir, train)
    trainer.args.dataloader_num_workers = workers
    model.base_model.model.config._attn_implementation = attention
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); these scripts call training_step alone
    batches = iter(trainer.get_train_dataloader())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    losses, start = [], 0.0
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            start = time.perf_counter()
        with autocast:
            losses.append(trainer.training_step(model, next(batches)).item())
    return (time.perf_counter() - start) / STEPS, losses[WARMUP:]


# torch.set_num_interop_threads can be set only once per process, before any parallel work: it is not a
# setting this in-process comparison can change.


def main() -> int:
    if not CHATDOCTOR.is_file():
        print(f"skipped: {CHATDOCTOR} not found (../shared is needed for this bench)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tuneforge-cpu-"))
    model_dir, (train, _) = build_models(work)["gpt2"], write_rows(work)
    variants = {
        "default (sdpa, 2 threads, fp32)": {},
        "eager attention": {"attention": "eager"},
        "1 thread": {"threads": 1},
        "bf16 autocast": {"bf16": True},
        "1 data loader worker": {"workers": 1},
    }
    rows = {}
    for name, settings in variants.items():
        torch.manual_seed(0)
        rows[name] = timed(model_dir, train, **settings)
    base_time, base_losses = rows["default (sdpa, 2 threads, fp32)"]
    table = Table(title=f"s/step over {STEPS} steps (after {WARMUP} warm-up), same batches")
    for column in ("setting", "s/step", "vs default", "max |loss diff| vs default"):
        table.add_column(column)
    for name, (seconds, losses) in rows.items():
        diff = max(abs(a - b) for a, b in zip(losses, base_losses))
        table.add_row(name, f"{seconds:.3f}", f"{base_time / seconds:.2f}x", f"{diff:.4f}")
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
