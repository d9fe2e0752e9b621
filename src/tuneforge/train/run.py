"""The training run: a whole run config in, a finished run directory out. Reads top to bottom.

What is the method's own (its data track, its Trainer, work before the first step, manifest fields and
plots) comes from its `Recipe`, looked up by `train.method` in the registry (`train/methods.py`).
Everything else (run directory, lock, manifest, resume, signals, processes, reports) is shared here.

Nothing is written before the model and data pass their checks: a bad config, file or template leaves an
existing run as it was (and no new folder behind). From the first step on, manifest.json says the truth:
running, finished, failed (with the error) or interrupted (Ctrl-C / SIGTERM: a checkpoint, then a clean
stop and the command that resumes).

from tuneforge.config.loading import load_config
from tuneforge.train.run import run_finetune
run_finetune(load_config("examples/quickstart.yaml"), "runs/quickstart")
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from transformers import TrainerCallback

from tuneforge.config.loading import config_to_yaml
from tuneforge.config.schema import RunConfig
from tuneforge.data.agent import tools_of
from tuneforge.data.prepared import PreparedData
from tuneforge.errors import TuneforgeError
from tuneforge.model.base_pin import MANIFEST_KEY, base_record
from tuneforge.model.build import ModelBundle, load_trained, save_trained
from tuneforge.run.checkpoints import remove_incomplete, resume_point, step_of
from tuneforge.run.cpu import cpu_share
from tuneforge.run.directory import RunDir
from tuneforge.run.files import write_atomically
from tuneforge.run.lock import RunLock
from tuneforge.run.manifest import ENDED, now, read_manifest, resume_record, start_fields, write_manifest
from tuneforge.run.metrics import keep_metrics_up_to, read_metrics
from tuneforge.run.plots import plot_loss
from tuneforge.run.processes import barrier, join_process_group, main_process, world_size
from tuneforge.run.space import disk_full_error
from tuneforge.train.callbacks import CpuShareCallback, TotalStepsCallback, close_progress
from tuneforge.train.distributed import Layout, check_strategy, resolve_strategy
from tuneforge.train.guards import GracefulStop, StopBeforeTraining, all_trained_finite
from tuneforge.train.methods import check_method, recipe_for, unread_sections
from tuneforge.train.recipe import Recipe
from tuneforge.train.resume import (
    check_resumable,
    check_same_data,
    check_same_global_batch,
    resume_base,
    saved_train_section,
)
from tuneforge.train.summary import show_before_after


@dataclass
class FinetuneResult:
    run_dir: Path
    eval_before: dict | None
    eval_after: dict | None
    global_step: int
    interrupted: str | None = None  # the signal that stopped the run; a checkpoint holds its progress


@dataclass
class Resume:
    checkpoint: Path
    incomplete: list[tuple[Path, str]]  # newer checkpoints cut off by a crash, removed once the resume starts
    trained_out: bool  # every step was trained before the crash: only finishing (evaluate, save) is left


def run_finetune(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    extra_callbacks: Sequence[TrainerCallback] = (),
    console: Console | None = None,
    allow_base_change: bool = False,
) -> FinetuneResult:
    # Under torchrun every process runs this function; only rank 0 prints, writes and owns the folder.
    console = (console or Console()) if main_process() else Console(quiet=True)
    recipe = recipe_for(config.train.method)
    check_method(config)
    for section in unread_sections(config):
        console.print(f"[yellow]note:[/] train.method={recipe.name} does not read the {section} section")
    check_strategy(config.distributed, world=world_size(), cuda=torch.cuda.is_available())
    join_process_group()
    run = RunDir(Path(run_dir))
    if main_process():
        run.check_target(resume=resume, overwrite=overwrite)
    # What the model loads from; config.yaml is written from `config`, as the user wrote it.
    loads = checked_resume(run, config, allow_base_change, console) if resume else config
    stop = GracefulStop(notice=console.print, every=recipe.steps_per_checkpoint(config))
    with RunLock(run.root, notice=console.print) if main_process() else nullcontext() as lock:
        try:  # everything that can fail on bad input, before the run directory changes
            resuming = find_resume(run, config) if resume else None
            bundle, data = recipe.prepare(loads, console)
            if resume:
                check_same_data(run, data.file_hashes)
            layout = Layout(
                resolve_strategy(config.distributed, world_size()),
                world_size(),
                recipe.rows_per_device(config),
                config.train.grad_accumulation,
            )
            if resume:
                check_same_global_batch(run, layout)
            callbacks = [
                stop,
                CpuShareCallback(cpu_share()),
                TotalStepsCallback(run.manifest),
                *extra_callbacks,
            ]
            recipe.before_start(config, run, bundle, data, resume)
            trainer = recipe.assemble(config, bundle, data, run, callbacks, console, resume)
        except BaseException:
            if lock is not None:
                lock.release(remove_dir=lock.created_dir)  # nothing of value was written
            raise
        console.print(f"processes: {layout.describe()}")
        if main_process():
            prepare_directory(run, config, recipe, data, layout, resuming, overwrite, console)
        barrier()  # the others read the checkpoint only once rank 0 has removed incomplete ones
        # Ctrl-C / SIGTERM from here: a clean stop, never half a file; threads: this process's CPU share
        with stop, cpu_share().busy() as budget:
            console.print(f"cpu: {budget.describe()}", highlight=False)
            return train(config, recipe, run, bundle, data, trainer, resuming, stop, console)


def prepare_directory(
    run: RunDir,
    config: RunConfig,
    recipe: Recipe,
    data: PreparedData,
    layout: Layout,
    resuming: Resume | None,
    overwrite: bool,
    console: Console,
) -> None:
    """The main process readies the folder: incomplete checkpoints and later metrics gone on resume, the
    manifest started, the method's start files written."""
    if resuming:
        remove_incomplete(resuming.incomplete, console.print)
        keep_metrics_up_to(run.metrics, step_of(resuming.checkpoint))
        console.print(f"resuming from [bold]{resuming.checkpoint}[/]", soft_wrap=True)
    if overwrite:
        run.clear()
    start_manifest(run, config, recipe, data, layout, resuming.checkpoint if resuming else None)
    if not resuming:
        recipe.write_start(run, data)


def checked_resume(run: RunDir, config: RunConfig, allow_base_change: bool, console: Console) -> RunConfig:
    """--resume's checks before any work; returns the config whose model section finds the run's base."""
    for warning in check_resumable(run, config):
        console.print(f"[yellow]note:[/] {warning}")
    return resume_base(
        run,
        config,
        allow_base_change,
        lambda text: console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True),
    )


def find_resume(run: RunDir, config: RunConfig) -> Resume:
    """Reads only: a refused resume leaves the run as it was."""
    checkpoint, incomplete = resume_point(run.checkpoints)
    if checkpoint is None:
        raise TuneforgeError(f"--resume: no complete checkpoint under {run.checkpoints}")
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    saved_epochs = saved_train_section(run).get("epochs")
    target = config.train.max_steps or (
        state.get("max_steps") if config.train.epochs == saved_epochs else None
    )
    return Resume(checkpoint, incomplete, trained_out=target is not None and step_of(checkpoint) >= target)


def start_manifest(
    run: RunDir,
    config: RunConfig,
    recipe: Recipe,
    data: PreparedData,
    layout: Layout,
    checkpoint: Path | None,
) -> None:
    run.config.write_text(config_to_yaml(config))
    if checkpoint is not None:  # the original start fields stay; the resume is recorded beside them
        resumes = read_manifest(run.manifest).get("resumes", [])
        record = resume_record(checkpoint, resumes)
        record["resumes"][-1]["processes"] = layout.record()
        write_manifest(run.manifest, record, drop=ENDED)
        return
    rows = {"train": data.train_stats.kept, "eval": data.eval_stats.kept if data.eval_stats else 0}
    start = start_fields(data.file_hashes, rows, config.train.seed)
    fields = {"max_length": data.max_length, "processes": layout.record()}
    fields[MANIFEST_KEY] = base_record(config.model, run.root)  # later commands check the base against it
    fields |= recipe.manifest_fields(config, data)
    write_manifest(run.manifest, {**start, **fields})
    write_eval_split(run.eval_split, data.eval_items)


def write_eval_split(path: Path, items: list) -> None:
    """messages rows (the final assistant turn is the reference) with the tools they offer, or text rows for
    plain documents."""
    lines = [json.dumps({"text": item} if isinstance(item, str) else split_row(item)) for item in items]
    write_atomically(path, "".join(line + "\n" for line in lines))


def split_row(messages: list) -> dict:
    tools = tools_of(messages)
    return {"messages": list(messages), **({"tools": tools} if tools else {})}


def train(
    config: RunConfig,
    recipe: Recipe,
    run: RunDir,
    bundle: ModelBundle,
    data: PreparedData,
    trainer,
    resuming: Resume | None,
    stop: GracefulStop,
    console: Console,
) -> FinetuneResult:
    try:
        if resuming and resuming.trained_out:  # the transformers Trainer would train one step too many
            load_trained(bundle.model, resuming.checkpoint)
            step = step_of(resuming.checkpoint)
        else:
            try:  # the baseline evaluation runs inside (eval_on_start), once the model is wrapped for DDP
                trainer.train(resume_from_checkpoint=str(resuming.checkpoint) if resuming else None)
            except StopBeforeTraining:  # a signal during the baseline evaluation: nothing trained or saved
                trainer.callback_handler.on_train_end(trainer.args, trainer.state, trainer.control)
                record(run, {"status": "interrupted", "stopped": now(), "global_step": 0})
                return FinetuneResult(run.root, baseline(trainer), None, 0, interrupted=stop.requested)
            step = trainer.state.global_step
            if stop.requested and step < trainer.state.max_steps:
                record(run, {"status": "interrupted", "stopped": now(), "global_step": step})
                return FinetuneResult(run.root, baseline(trainer), None, step, interrupted=stop.requested)
        after = final_evaluation(trainer, step) if data.eval is not None else None
        before = baseline(trainer) or first_eval(run)
        show_before_after(console, before, after)
        save_adapter(bundle, run, trainer if sharded(config) else None)
        if main_process():
            title = f"{config.model.name_or_path} · {config.lora.method} · {config.train.method}"
            plot_loss(run.metrics, run.loss_plot, title=title)
            recipe.plots(run, title)
            best_path = trainer.state.best_model_checkpoint
            best = {"best_checkpoint": Path(best_path).name} if best_path else {}
            record(run, {"status": "finished", "finished": now(), "global_step": step, **best})
    except KeyboardInterrupt:
        record(run, {"status": "interrupted", "stopped": now(), "global_step": trainer.state.global_step})
        raise
    except BaseException as exc:
        failure = disk_full_error(run, exc) or exc  # a full disk: the file, the space left, what is intact
        error = str(failure) if isinstance(failure, TuneforgeError) else f"{type(exc).__name__}: {exc}"
        with suppress(OSError):  # a disk too full even for the manifest must not hide why the run failed
            record(run, {"status": "failed", "stopped": now(), "error": error})
        if failure is exc:
            raise
        raise failure from exc
    finally:
        close_progress(trainer)
    console.print(f"[bold green]done[/]: {run.root}")
    return FinetuneResult(run.root, before, after, step)


def record(run: RunDir, fields: dict) -> None:
    if main_process():  # rank 0 owns the manifest
        write_manifest(run.manifest, fields)


def baseline(trainer) -> dict | None:
    """The evaluation before the first step (eval_on_start), from this process's log history: the loss
    and, logged beside it, the generation metrics."""
    entries = [
        e for e in trainer.state.log_history if e.get("step") == 0 and any(k.startswith("eval_") for k in e)
    ]
    return {k: v for e in entries for k, v in e.items() if k not in ("step", "epoch")} or None


def sharded(config: RunConfig) -> bool:
    """Weights split across the processes (FSDP, ZeRO-3): no process holds the whole adapter alone."""
    strategy = resolve_strategy(config.distributed, world_size())
    return strategy == "fsdp" or (strategy == "deepspeed" and config.distributed.zero_stage == 3)


def save_adapter(bundle: ModelBundle, run: RunDir, gather_with=None) -> None:
    """Written beside, then swapped in: a crash leaves the previous adapter or none, never half of one.
    With sharded weights (`gather_with` is the Trainer) every process takes part in gathering them."""
    if not all_trained_finite(bundle.model):  # the guards stop before this; the last line of defence
        raise TuneforgeError("not saving the adapter: some trained weights are not finite")
    staging = run.root / ".adapter.tmp"
    if main_process():
        shutil.rmtree(staging, ignore_errors=True)
    if gather_with is not None:
        barrier()
        gather_with.save_model(str(staging))  # the Trainer's full-state-dict gather; rank 0 writes
    if not main_process():
        return
    if gather_with is None:
        save_trained(bundle.model, staging)
    bundle.tokenizer.save_pretrained(staging)  # carries the exact chat template used in training
    shutil.rmtree(run.adapter, ignore_errors=True)
    staging.rename(run.adapter)


def final_evaluation(trainer, step: int) -> dict:
    """Evaluate at the last step unless the periodic evaluation just did."""
    history = [entry for entry in trainer.state.log_history if is_evaluation(entry)]
    if history and history[-1].get("step") == step:
        return history[-1]
    return trainer.evaluate()


def is_evaluation(entry: dict) -> bool:
    """A logged evaluation: its held-out loss, or (GRPO) its held-out reward."""
    return "eval_loss" in entry or "eval_reward" in entry


def first_eval(run: RunDir) -> dict | None:
    """On resume the baseline evaluation happened in an earlier process: read it back from metrics.jsonl."""
    evals = [r for r in read_metrics(run.metrics) if is_evaluation(r) and r.get("step") == 0]
    return evals[0] if evals else None
