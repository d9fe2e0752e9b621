"""Predicted vs measured peak memory of real training runs, on this machine's CPU (or GPU when present).

Each configuration trains a ~100M-parameter Llama (random weights, built here) for 3 steps on sequences
filled to max_length, in its own process; the peak is the process's max RSS on CPU or
torch.cuda.max_memory_allocated (plus the planner's fixed runtime overhead) on GPU.

    .venv/bin/python bench/plan_accuracy.py        # ~3 min on 2 cores
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "lora": {"lora": {"method": "lora", "r": 16, "dropout": 0.05}},
    "qlora-nf4": {"quant": {"mode": "4bit"}, "lora": {"method": "lora", "r": 16, "dropout": 0.05}},
    "full": {"lora": {"method": "full"}},
    "lora-checkpointing": {
        "lora": {"method": "lora", "r": 16, "dropout": 0.0},
        "train": {"gradient_checkpointing": True},
    },
}
BATCH, SEQ = 4, 512


def build_model(out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuneforge_dev.tiny_model import build_tokenizer

    tokenizer = build_tokenizer("llama", 1024)
    config = LlamaConfig(
        vocab_size=32000,  # a real vocabulary size, so logits weigh what they do in practice
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=8,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_rows(out: Path) -> Path:
    rng = random.Random(0)
    syllables = ["ka", "lo", "mi", "ren", "to", "sa", "vi", "pe", "dor", "lin", "mar", "tek"]
    rows = [{"prompt": "write", "completion": " ".join(rng.choices(syllables, k=1200))} for _ in range(64)]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def run_config(model_dir: Path, data: Path, case: dict):
    from tuneforge.config.loading import validate_config

    raw = {
        "model": {"name_or_path": str(model_dir)},
        # every sample is cut to max_length on purpose (the planner's worst case): tell preflight so
        "data": {
            "path": str(data),
            "format": "prompt_completion",
            "eval_fraction": 0,
            "cache": False,
            "preflight": {"truncation": "off"},
        },
        "train": {
            "max_steps": 3,
            "batch_size": BATCH,
            "max_length": SEQ,
            "save_steps": 1000,
            "logging_steps": 1,
        },
        "log": {"tensorboard": False},
    }
    for section, values in case.items():
        raw.setdefault(section, {}).update(values)
    return validate_config(raw)


def child(name: str, model_dir: Path, data: Path) -> dict:
    import torch
    from rich.console import Console

    from tuneforge.model.plan import GPU_RUNTIME_BYTES, Setup, make_plan
    from tuneforge.train.run import run_finetune

    config = run_config(model_dir, data, CASES[name])
    device = "H100-80GB" if torch.cuda.is_available() else "cpu"
    setup = Setup(config.model, config.quant, config.lora, config.train)
    predicted = make_plan(setup, config.train.max_length, device).total_gib
    run_finetune(config, Path(tempfile.mkdtemp()) / name, console=Console(quiet=True))
    if torch.cuda.is_available():
        measured = (torch.cuda.max_memory_allocated() + GPU_RUNTIME_BYTES) / 1024**3
    else:
        measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"predicted_gib": predicted, "measured_gib": measured}


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
        return 0
    from rich.console import Console
    from rich.table import Table

    work = Path(tempfile.mkdtemp(prefix="tuneforge-plan-"))
    model_dir, data = build_model(work / "llama100m"), write_rows(work / "rows.jsonl")
    table = Table(title=f"planned vs measured peak memory, batch {BATCH} x {SEQ} tokens, 3 steps")
    for column in ("config", "predicted GiB", "measured GiB", "error"):
        table.add_column(column, justify="right")
    worst = 0.0
    for name in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, str(model_dir), str(data)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            print(out.stderr[-3000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        error = r["predicted_gib"] / r["measured_gib"] - 1
        worst = max(worst, abs(error))
        table.add_row(name, f"{r['predicted_gib']:.2f}", f"{r['measured_gib']:.2f}", f"{error:+.0%}")
    Console().print(table)
    print(f"worst_abs_error={worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
