"""Where a training step's CPU time goes, for the selective loss and the full-logits reference path:
torch.profiler's top operators by self CPU time over 3 steps (after 2 warm-up steps), on the 16M Llama
with the GPT-2 vocabulary and ChatDoctor rows that bench/throughput.py uses.

    .venv/bin/python bench/profile_step.py            # needs ../shared; ~1 min on 2 cores
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from throughput import CHATDOCTOR, build_models, tuneforge_path, write_rows  # noqa: E402


def profile_steps(model_dir: Path, train: Path, loss: str) -> str:
    trainer, model, _, _ = tuneforge_path(model_dir, train, loss=loss)
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); these scripts call training_step alone
    batches = iter(trainer.get_train_dataloader())
    for _ in range(2):
        trainer.training_step(model, next(batches))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            trainer.training_step(model, next(batches))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> int:
    if not CHATDOCTOR.is_file():
        print(f"skipped: {CHATDOCTOR} not found (../shared is needed for this bench)")
        return 0
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="tuneforge-profile-"))
    model_dir, (train, _) = build_models(work)["gpt2"], write_rows(work)
    for loss in ("full_logits", "selective"):
        print(f"\n=== loss path: {loss} (3 steps, batch 4, max_length 512) ===")
        print(profile_steps(model_dir, train, loss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
