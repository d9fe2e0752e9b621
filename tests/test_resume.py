"""Crash-exact resume, checkpoints that are complete or never used, and Ctrl-C / SIGTERM as a clean stop.

The reference is an uninterrupted run with the same seed. LoRA dropout is on and the run spans several
epochs, so the RNG streams and the per-epoch data order are both exercised.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import quick_config, write_jsonl
from safetensors.torch import load_file

from tuneforge.config.loading import config_to_yaml
from tuneforge.run.checkpoints import checkpoint_dirs
from tuneforge.run.directory import RunDir
from tuneforge.train.run import run_finetune

MAX_STEPS, SAVE_EVERY = 14, 4  # 24 rows / batch 4 = 6 steps per epoch: the run crosses two epochs

KILL_AT_STEP = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from tuneforge.config.loading import load_config
    from tuneforge.train.run import run_finetune

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == int(sys.argv[3]):
                os.kill(os.getpid(), getattr(signal, sys.argv[4]))

        def on_train_end(self, args, state, control, **kwargs):
            if sys.argv[3] == "-1":  # after the last step: while evaluating and saving the adapter
                os.kill(os.getpid(), getattr(signal, sys.argv[4]))

        def on_evaluate(self, args, state, control, **kwargs):
            if sys.argv[3] == "0" and state.global_step == 0:  # during the baseline evaluation
                os.kill(os.getpid(), getattr(signal, sys.argv[4]))

    run_finetune(load_config(sys.argv[1]), sys.argv[2], extra_callbacks=[Stop()])
    """
)


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rows")
    train = [{"prompt": f"count the lines in f{i}.txt {'please ' * (i % 5)}", "completion": f"wc -l f{i}.txt"}
             for i in range(24)]  # fmt: skip
    held_out = [{"prompt": f"delete g{i}.txt", "completion": f"rm g{i}.txt"} for i in range(8)]
    return write_jsonl(folder / "train.jsonl", train), write_jsonl(folder / "eval.jsonl", held_out)


def config_for(tiny_models, rows, group_by_length: bool):
    return quick_config(
        tiny_models("llama"),
        *rows,
        lora={"dropout": 0.1},
        train={
            "max_steps": MAX_STEPS,
            "save_steps": SAVE_EVERY,
            "eval_steps": SAVE_EVERY,
            "group_by_length": group_by_length,
            "max_length": "auto",
        },
    )


def kill_at(config, run_dir: Path, step: int, how: str = "SIGKILL") -> subprocess.CompletedProcess:
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(config_to_yaml(config))
    script = [sys.executable, "-c", KILL_AT_STEP, str(path), str(run_dir), str(step), how]
    return subprocess.run(script, capture_output=True, text=True, timeout=600)


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def logged_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if '"loss"' in line]


@pytest.fixture(scope="module")
def reference(tiny_models, rows, tmp_path_factory):
    """Uninterrupted runs, one per sampling strategy."""
    done = {}
    for grouped in (True, False):
        run_dir = tmp_path_factory.mktemp("reference") / f"grouped-{grouped}"
        run_finetune(config_for(tiny_models, rows, grouped), run_dir)
        done[grouped] = run_dir
    return done


@pytest.mark.parametrize("when", ["random-step", "mid-epoch"])
@pytest.mark.parametrize("grouped", [True, False], ids=["group_by_length", "random-order"])
def test_sigkill_at_a_random_step_then_resume_gives_the_uninterrupted_adapter(
    tiny_models, rows, reference, tmp_path, grouped, when
):
    # A resume at an epoch boundary reloads the random state before the data order is drawn; one in the
    # middle of an epoch (step 10: checkpoint 8, epoch 2 began at step 7) needs the seeded order too.
    step = random.SystemRandom().randint(SAVE_EVERY + 1, MAX_STEPS - 1) if when == "random-step" else 10
    print(f"killed at step {step}")  # shown on failure: rerun with this step to reproduce
    config = config_for(tiny_models, rows, grouped)
    run_dir = tmp_path / "run"
    killed = kill_at(config, run_dir, step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert RunDir(run_dir).status() == "interrupted", "a dead process's 'running' is reported as interrupted"

    resumed = run_finetune(config, run_dir, resume=True)
    assert resumed.global_step == MAX_STEPS
    assert max_difference(adapter(run_dir), adapter(reference[grouped])) <= 1e-6
    assert logged_steps(run_dir) == list(range(1, MAX_STEPS + 1)), "every step logged exactly once"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    original = json.loads((reference[grouped] / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["rows"] == original["rows"]
    # killed at the end of `step`, before that step's own checkpoint would be written
    resumed_from = f"checkpoint-{(step - 1) // SAVE_EVERY * SAVE_EVERY}"
    assert [r["from_checkpoint"] for r in manifest["resumes"]] == [resumed_from]


DAMAGE = {
    "optimizer state missing": lambda c: (c / "optimizer.pt").unlink(),
    "scheduler state missing": lambda c: (c / "scheduler.pt").unlink(),
    "weights truncated": lambda c: (c / "adapter_model.safetensors").write_bytes(
        (c / "adapter_model.safetensors").read_bytes()[:1000]
    ),
    "never sealed": lambda c: (c / "tuneforge-complete.json").unlink(),
}
REASONS = {
    "optimizer state missing": "optimizer.pt is missing",
    "scheduler state missing": "scheduler.pt is missing",
    "weights truncated": "adapter_model.safetensors is truncated",
    "never sealed": "never sealed",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_named_skipped_and_the_one_before_resumed(
    tiny_models, rows, reference, tmp_path, damage, capsys
):
    config = config_for(tiny_models, rows, True)
    run_dir = tmp_path / "run"
    assert kill_at(config, run_dir, 2 * SAVE_EVERY + 1).returncode == -signal.SIGKILL
    newest = checkpoint_dirs(run_dir / "checkpoints")[-1]
    assert newest.name == f"checkpoint-{2 * SAVE_EVERY}"
    DAMAGE[damage](newest)

    from rich.console import Console

    console = Console(record=True, width=300)
    run_finetune(config, run_dir, resume=True, console=console)
    printed = console.export_text()
    assert f"skipping {newest}: " in printed and REASONS[damage] in printed
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{SAVE_EVERY}'}" in printed
    assert max_difference(adapter(run_dir), adapter(reference[True])) <= 1e-6, "never a fresh optimizer"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_checkpoint_stops_cleanly_and_the_run_resumes(
    tiny_models, rows, reference, tmp_path, how
):
    config = config_for(tiny_models, rows, True)
    run_dir = tmp_path / "run"
    stopped = kill_at(config, run_dir, 6, how)  # sent after step 6 ends: the run stops at the next boundary
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["global_step"] == 7
    assert (run_dir / "checkpoints" / "checkpoint-7" / "tuneforge-complete.json").is_file()
    assert not (run_dir / "adapter").exists(), "an interrupted run has no final adapter"
    run_finetune(config, run_dir, resume=True)
    assert max_difference(adapter(run_dir), adapter(reference[True])) <= 1e-6


def test_a_signal_during_the_baseline_evaluation_stops_before_any_step(tiny_models, rows, tmp_path):
    config = config_for(tiny_models, rows, True)
    run_dir = tmp_path / "run"
    stopped = kill_at(config, run_dir, 0, "SIGINT")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["global_step"] == 0
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())


def test_the_cli_prints_the_resume_command_after_a_signal(tiny_models, rows, tmp_path):
    config = config_for(tiny_models, rows, True)
    # Long enough that the signal lands mid-training however slowly this test polls on a loaded machine.
    config = config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 2000})})
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config))
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "train",
        str(path),
        "--output-dir",
        str(tmp_path / "run"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list((tmp_path / "run" / "checkpoints").glob("checkpoint-*/tuneforge-complete.json")):
        assert time.time() < deadline and process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "interrupted (SIGINT)" in output and f"--output-dir {tmp_path / 'run'} --resume" in output
    assert "Traceback" not in output


HOLD_LOCK = (
    "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(120)"
)


def test_a_run_dir_locked_by_a_live_process_is_refused_and_a_dead_ones_lock_is_not(
    tiny_models, rows, tmp_path
):
    from tuneforge.errors import TuneforgeError

    config = config_for(tiny_models, rows, True)
    config = config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 2})})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = run_dir / ".lock"
    lock.write_text(json.dumps({"pid": 999999, "host": "elsewhere"}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)])
    try:
        while not _held(lock):
            time.sleep(0.05)
        with pytest.raises(TuneforgeError, match="in use by another tuneforge process"):
            run_finetune(config, run_dir)
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead: its lock is gone with it, whatever the file says (pid, host).
    assert lock.read_text() and run_finetune(config, run_dir).global_step == 2
    assert not lock.exists(), "released when the run ends"


def _held(lock: Path) -> bool:
    from tuneforge.run.lock import is_locked

    return is_locked(lock.parent)


def test_killed_while_finishing_then_resumed_finishes_without_an_extra_step(
    tiny_models, rows, reference, tmp_path
):
    config = config_for(tiny_models, rows, True)
    run_dir = tmp_path / "run"
    assert kill_at(config, run_dir, -1).returncode == -signal.SIGKILL
    assert RunDir(run_dir).status() == "interrupted" and not (run_dir / "adapter").exists()
    result = run_finetune(config, run_dir, resume=True)
    assert result.global_step == MAX_STEPS
    names = [c.name for c in checkpoint_dirs(run_dir / "checkpoints")]
    assert f"checkpoint-{MAX_STEPS + 1}" not in names, "no step beyond max_steps"
    assert max_difference(adapter(run_dir), adapter(reference[True])) <= 1e-6
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and "error" not in manifest and "stopped" not in manifest


def test_two_trainings_into_one_folder_the_second_is_refused(tiny_models, rows, tmp_path):
    config = config_for(tiny_models, rows, True)
    path = tmp_path / "c.yaml"
    path.write_text(
        config_to_yaml(
            config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 400})})
        )
    )
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "tuneforge.cli", "train", str(path), "--output-dir", str(run_dir)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (run_dir / "manifest.json").is_file():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        second = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
        assert (
            second.returncode == 2
            and f"in use by another tuneforge process (pid {first.pid} on" in second.stdout
        )
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=300)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
