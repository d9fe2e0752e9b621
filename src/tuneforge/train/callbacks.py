"""Trainer callbacks: progress (a bar on a terminal, lines in a log), one JSON line per log event in
metrics.jsonl, the total step count in manifest.json (for watchers: the studio's step of total and ETA),
and the CPU share kept current between steps (run/cpu.py)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from transformers import TrainerCallback

from tuneforge.progress import Phase
from tuneforge.run.cpu import CpuShare
from tuneforge.run.manifest import write_manifest
from tuneforge.run.metrics import append_metrics


class MetricsFileCallback(TrainerCallback):
    """Appends every logged dict (train loss, eval loss, learning rate) with its step to a JSONL file."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
            append_metrics(self.path, record)


class TotalStepsCallback(TrainerCallback):
    """Once the Trainer knows how many steps the run takes, manifest.json says it (`total_steps`)."""

    def __init__(self, manifest: Path):
        self.manifest = manifest

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_manifest(self.manifest, {"total_steps": state.max_steps})


class CpuShareCallback(TrainerCallback):
    """Before each step: this process's threads follow the busy tuneforge processes (at most once a second)."""

    def __init__(self, share: CpuShare):
        self.share = share

    def on_step_begin(self, args, state, control, **kwargs):
        self.share.rebalance()


class ProgressCallback(TrainerCallback):
    """Training's progress (tuneforge.progress): a bar on a terminal, plain lines in a log."""

    def __init__(self, console: Console):
        self.console = console
        self.phase: Phase | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.phase = Phase(self.console, "training", total=state.max_steps, unit="steps")
        self.phase.update(done=state.global_step)
        self.phase.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.phase is not None:
            self.phase.update(done=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.phase is None or not logs:
            return
        if "loss" in logs:
            self.phase.update(note=f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            self.console.print(f"  step {state.global_step}: eval loss {logs['eval_loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.phase is not None:
            self.phase.__exit__(None, None, None)
            self.phase = None


def close_progress(trainer) -> None:
    """The Trainer calls on_train_end only when training ends well: after an error the progress lines
    would go on."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            callback.on_train_end(trainer.args, trainer.state, trainer.control)
