"""Scaling over processes: the same `tuneforge train` on 1 and N processes (DDP), tokens/s side by side.

A 4-layer Llama (hidden 256, built here) on the offline demo data, per-device batch 8, 120 optimizer steps,
so N processes train N times the samples per step. Each configuration runs as its own `tuneforge train`
(with `--nproc N` for N > 1), and its throughput comes from the Trainer's own train_runtime.

On CPUs torchrun gives each process one thread, so the fair baseline is one process with one thread:
efficiency = tokens/s with N processes / (N × tokens/s of one single-threaded process). The row
"1 process, all threads" shows what the same cores do without DDP. On GPUs (one process per device) the
baseline is one process.

    .venv/bin/python bench/scaling.py                 # 1 and 2 processes on this CPU: ~4 min on 2 cores
    .venv/bin/python bench/scaling.py --procs 1 2 4   # on a machine with 4 GPUs

The last line reads `scaling_efficiency=X` for the largest process count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from tuneforge.config.loading import config_to_yaml, validate_config
from tuneforge_dev.demo_data import write_demo_dataset
from tuneforge_dev.tiny_model import TinySize, build_tiny_model

STEPS, BATCH = 120, 8


def write_config(folder: Path) -> Path:
    model = build_tiny_model(folder / "model", "llama", TinySize(hidden=256, layers=4))
    train, _ = write_demo_dataset(folder / "data", n_train=2000, n_eval=8)
    config = validate_config(
        {
            "model": {"name_or_path": str(model)},
            "data": {"path": str(train), "format": "prompt_completion", "template": "alpaca"},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
            "train": {
                "max_steps": STEPS,
                "batch_size": BATCH,
                "max_length": 96,
                "save_steps": 10_000,
                "logging_steps": 10,
                "learning_rate": 1e-3,
            },
            "log": {"tensorboard": False},
        }  # fmt: skip
    )
    path = folder / "scaling.yaml"
    path.write_text(config_to_yaml(config))
    return path


def mean_tokens_per_sample(config_path: Path) -> float:
    from tuneforge.config.loading import load_config
    from tuneforge.data.prepare import prepare_data
    from tuneforge.model.load import load_tokenizer

    config = load_config(config_path)
    data = prepare_data(config.data, load_tokenizer(config.model), 96, None)
    return sum(data.train["length"]) / len(data.train)


def train(config: Path, run_dir: Path, procs: int, threads: int | None) -> float:
    """Samples per second over the run, from the Trainer's final log line."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "tuneforge.cli", "train", str(config), "--output-dir", str(run_dir)]
    command += ["--nproc", str(procs)] if procs > 1 else []
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(line["train_samples_per_second"] for line in lines if "train_samples_per_second" in line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["TUNEFORGE_CACHE"] = str(folder / "cache")
        config = write_config(folder)
        tokens = mean_tokens_per_sample(config)
        rows = []  # (label, processes, tokens/s)
        if not cuda:
            rows.append(("1 process, all threads", 1, tokens * train(config, folder / "all", 1, None)))
        for procs in sorted(set(args.procs)):
            threads = None if cuda else 1  # torchrun's default for N > 1; the same for the baseline
            label = f"{procs} process{'es' if procs > 1 else ''}"
            label += "" if cuda else (", 1 thread each" if procs > 1 else ", 1 thread")
            rows.append((label, procs, tokens * train(config, folder / f"p{procs}", procs, threads)))
    baseline = next(rate for label, procs, rate in rows if procs == 1 and ("1 thread" in label or cuda))
    table = Table(title=f"scaling on {'CUDA' if cuda else 'CPU'}: {STEPS} steps, batch {BATCH} per process")
    for column in ("configuration", "tokens/s", "vs 1 process", "efficiency"):
        table.add_column(column, justify="right" if column != "configuration" else "left")
    for label, procs, rate in rows:
        table.add_row(label, f"{rate:,.0f}", f"{rate / baseline:.2f}x", f"{rate / (procs * baseline):.2f}")
    Console().print(table)
    largest = max(rows, key=lambda row: row[1])
    print(f"scaling_efficiency={largest[2] / (largest[1] * baseline):.2f}")


if __name__ == "__main__":
    main()
