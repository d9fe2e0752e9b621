"""Trainer callbacks that keep a run safe: stop at the first non-finite loss or gradient, seal each
checkpoint once it is fully written, and turn Ctrl-C / SIGTERM into a checkpoint and a clean stop.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
from pathlib import Path

import torch
from transformers import TrainerCallback

from tuneforge.errors import TuneforgeError
from tuneforge.run.checkpoints import rotate, seal
from tuneforge.run.processes import any_process, barrier


class NonFiniteError(TuneforgeError):
    """Training produced a NaN or infinite loss or gradient."""


class NonFiniteGuard(TrainerCallback):
    """Checks the gradients before every optimizer step, so a NaN never reaches the weights, and every
    logged loss (the fp16 grad scaler skips steps with infinite gradients by design, so there only the
    loss is checked)."""

    def __init__(self, learning_rate: float, last_checkpoint=lambda: None):
        self.learning_rate = learning_rate
        self.last_checkpoint = last_checkpoint

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            raise self.error(state.global_step + 1, "the gradient norm")

    def on_log(self, args, state, control, logs=None, **kwargs):
        # With fp16 an infinite gradient norm is the loss scaler's normal overflow (the step is skipped).
        keys = ("loss", "eval_loss") if args.fp16 else ("loss", "grad_norm", "eval_loss")
        for key in keys:
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise self.error(state.global_step, "the " + key.replace("_", " "))

    def error(self, step: int, what: str) -> NonFiniteError:
        checkpoint = self.last_checkpoint()
        kept = (
            f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was saved before it"
        )
        return NonFiniteError(
            f"training stopped at step {step}: {what} is NaN or infinite. Nothing non-finite was saved; "
            f"{kept}. Start again (--overwrite, or another --output-dir) with a lower train.learning_rate "
            f"(now {self.learning_rate:g}), model.dtype: bfloat16 instead of float16, or a smaller "
            "train.max_grad_norm, or look for extreme values in the data."
        )


class SealCheckpoints(TrainerCallback):
    """After the Trainer writes a checkpoint: refuse it if a trained weight is not finite (a weight can
    overflow while its gradient is still finite), else flush and seal it, then rotate the old ones."""

    def __init__(self, keep: int | None, guard: NonFiniteGuard):
        self.keep = keep
        self.guard = guard

    def on_save(self, args, state, control, model=None, **kwargs):
        barrier()  # every process has written its part (its RNG state) before rank 0 seals the checkpoint
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if model is not None and not all_trained_finite(model):
            shutil.rmtree(checkpoint, ignore_errors=True)
            raise self.guard.error(state.global_step, "a trained weight")
        seal(checkpoint)
        best = state.best_model_checkpoint
        rotate(Path(args.output_dir), self.keep, protect=Path(best) if best else None)


def all_trained_finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad)


class StopBeforeTraining(Exception):
    """A stop was asked for during the baseline evaluation: leave before the first step trains."""


class GracefulStop(TrainerCallback):
    """Ctrl-C or SIGTERM (a pre-empted cloud machine) finishes the current step, saves a checkpoint and
    stops; a second one stops at once. `every`: checkpoints fall on multiples of it (a GRPO run with
    grpo.iterations passes over each batch of rollouts), so the stop waits for the next one."""

    def __init__(self, notice=print, every: int = 1):
        self.notice, self.every = notice, every
        self.requested: str | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        when = "this step" if self.every == 1 else f"the next step that is a multiple of {self.every}"
        self.notice(f"{self.requested}: stopping after {when} with a checkpoint (again to stop at once)")

    def agreed(self) -> bool:
        """Every process stops at the same step, whichever of them got the signal (torchrun forwards it
        to each, not at the same instant): otherwise one saves while another waits in the next step."""
        if any_process(self.requested is not None) and self.requested is None:
            self.requested = "a signal to another process"
        return self.requested is not None

    def on_step_begin(self, args, state, control, **kwargs):
        # asked during the baseline evaluation (or before it): no step has trained, none will
        if state.global_step == 0 and self.agreed():
            raise StopBeforeTraining(self.requested)

    def on_step_end(self, args, state, control, **kwargs):
        if self.agreed() and state.global_step % self.every == 0:
            control.should_save = True
            control.should_training_stop = True
