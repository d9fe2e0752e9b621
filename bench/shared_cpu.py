"""Trainings that share the CPU: the quickstart's training (150 steps on the tiny model) alone, and two at
once, with torch's own threads (TUNEFORGE_THREADS=torch, what tuneforge did before) and with tuneforge's CPU
budget (run/cpu.py, the default). Seconds are each `tuneforge train` process's wall time, start to exit;
two at once are timed until both have ended. The last line's ratios: two at once over the two one after the
other (under 1: sharing the machine cost nothing), and a lone run under the budget over a lone run with
torch's threads (1: a run alone loses nothing).

    .venv/bin/python bench/shared_cpu.py              # ~5 min on 2 cores; keep the machine otherwise idle
    .venv/bin/python bench/shared_cpu.py --explore    # also: beside two busy loops, passive OpenMP waiting

--explore measures what the default was chosen from: the same training beside two busy-loop processes
(not tuneforge's, so the budget does not see them) with torch's threads, one thread, and OpenMP's passive
wait policy (OMP_WAIT_POLICY=PASSIVE), and two at once with torch's threads waiting passively.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
STEPS = 150
BUSY_LOOP = "while True: pass"
RUN_NUMBERS = itertools.count()


def prepare(folder: Path) -> tuple[Path, Path]:
    from tuneforge_dev.demo_data import write_demo_dataset
    from tuneforge_dev.tiny_model import build_tiny_model

    model = build_tiny_model(folder / "model", "llama")
    train, _ = write_demo_dataset(folder / "data")
    return model, train


def command(model: Path, train: Path, out: Path) -> list[str]:
    sets = {"model.name_or_path": model, "data.path": train, "data.eval_path": None, "train.max_steps": STEPS}
    args = [sys.executable, "-m", "tuneforge.cli", "train", str(ROOT / "examples" / "quickstart.yaml")]
    for key, value in sets.items():
        args += ["--set", f"{key}={'null' if value is None else value}"]
    return [*args, "--output-dir", str(out)]


def trainings(model: Path, train: Path, folder: Path, count: int, env: dict, beside: int = 0) -> list[float]:
    """Start `count` trainings at once (beside `beside` busy loops); each one's seconds, start to exit."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(beside)]
    try:
        started, processes = time.perf_counter(), []
        for _ in range(count):
            out = folder / f"run{next(RUN_NUMBERS)}"
            log = (folder / f"{out.name}.log").open("w")
            processes.append(
                subprocess.Popen(command(model, train, out), env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        seconds = []
        for process in processes:
            if process.wait() != 0:
                raise SystemExit(f"a training failed: see the logs in {folder}")
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        for loop in loops:
            loop.kill()


def environment(**overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "TUNEFORGE_THREADS")}
    env |= {"HF_HUB_OFFLINE": "1", "TUNEFORGE_BUSY_DIR": tempfile.mkdtemp(prefix="busy-")}
    return env | overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--explore", action="store_true", help="also the cases the default was chosen from")
    explore = parser.parse_args().explore
    torch_threads, budget = environment(TUNEFORGE_THREADS="torch"), environment()
    cases = [
        ("alone, torch's threads", 1, torch_threads, 0),
        ("alone, budget", 1, budget, 0),
        ("two at once, torch's threads", 2, torch_threads, 0),
        ("two at once, budget", 2, budget, 0),
    ]
    if explore:
        passive = {"OMP_WAIT_POLICY": "PASSIVE"}
        cases += [
            (
                "two at once, torch's threads, passive",
                2,
                environment(TUNEFORGE_THREADS="torch", **passive),
                0,
            ),
            ("beside 2 busy loops, torch's threads", 1, torch_threads, 2),
            ("beside 2 busy loops, 1 thread", 1, environment(TUNEFORGE_THREADS="1"), 2),
            ("beside 2 busy loops, passive", 1, environment(TUNEFORGE_THREADS="torch", **passive), 2),
            ("alone, passive", 1, environment(**passive), 0),
        ]
    with tempfile.TemporaryDirectory(prefix="shared-cpu-") as tmp:
        folder = Path(tmp)
        model, train = prepare(folder)
        trainings(model, train, folder, 1, budget)  # warm the caches (tokenized data, imports)
        results = {
            name: trainings(model, train, folder, count, env, beside) for name, count, env, beside in cases
        }
    table = Table(title=f"tuneforge train, quickstart tiny model, {STEPS} steps, {os.cpu_count()} CPUs")
    for column in ("case", "seconds (each)", "wall"):
        table.add_column(column)
    for name, seconds in results.items():
        table.add_row(name, ", ".join(f"{s:.1f}" for s in seconds), f"{max(seconds):.1f}")
    Console().print(table)
    alone_torch, alone_budget = results["alone, torch's threads"][0], results["alone, budget"][0]
    ratios = {
        "concurrent_vs_sequential_torch": max(results["two at once, torch's threads"]) / (2 * alone_torch),
        "concurrent_vs_sequential_budget": max(results["two at once, budget"]) / (2 * alone_budget),
        "lone_budget_vs_torch": alone_budget / alone_torch,
    }
    print(" ".join(f"{key}={value:.2f}" for key, value in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
