"""The supervised fine-tuning recipe: a whole run config in, a finished run directory out. Reads top to bottom.

Nothing is written before the model and data pass their checks: a bad config, file or template leaves an
existing run as it was (and no new folder behind). From the first step on, manifest.json says the truth:
running, finished, failed (with the error) or interrupted (Ctrl-C / SIGTERM: a checkpoint, then a clean
stop and the command that resumes).

from tuneforge.config.loading import load_config
from tuneforge.train.sft import run_finetune
run_finetune(load_config("examples/quickstart.yaml"), "runs/quickstart")
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback, set_seed
from transformers.integrations import TensorBoardCallback

from tuneforge.config.loading import config_to_yaml
from tuneforge.config.schema import RunConfig
from tuneforge.data.preflight import enforce
from tuneforge.data.prepare import PreparedData, prepare_data
from tuneforge.data.report import show_data, show_preflight
from tuneforge.errors import TuneforgeError
from tuneforge.eval.scoring import GenerationScorer
from tuneforge.infer.generate import Decoding
from tuneforge.model.build import ModelBundle, build_model, load_trained, save_trained
from tuneforge.model.load import context_length
from tuneforge.model.report import show_parameters
from tuneforge.run.checkpoints import newest_complete, remove_incomplete, resume_point, step_of
from tuneforge.run.directory import RunDir
from tuneforge.run.files import write_atomically
from tuneforge.run.lock import RunLock, main_process
from tuneforge.run.manifest import ENDED, now, read_manifest, resume_record, start_fields, write_manifest
from tuneforge.run.metrics import keep_metrics_up_to, read_metrics
from tuneforge.run.plots import plot_loss
from tuneforge.train.callbacks import MetricsFileCallback, RichProgressCallback
from tuneforge.train.guards import GracefulStop, NonFiniteGuard, SealCheckpoints, all_trained_finite
from tuneforge.train.resume import check_resumable, check_same_data, saved_train_section
from tuneforge.train.trainer import build_trainer, training_arguments, use_packing


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
) -> FinetuneResult:
    console = console or Console()
    run = RunDir(Path(run_dir))
    run.check_target(resume=resume, overwrite=overwrite)
    if resume:
        for warning in check_resumable(run, config):
            console.print(f"[yellow]note:[/] {warning}")
    stop = GracefulStop(notice=console.print)
    with RunLock(run.root, notice=console.print) if main_process() else nullcontext() as lock:
        try:  # everything that can fail on bad input, before the run directory changes
            resuming = find_resume(run, config) if resume else None
            bundle, data = prepare(config, console)
            if resume:
                check_same_data(run, data.file_hashes)
            trainer = assemble_trainer(config, bundle, data, run, [stop, *extra_callbacks], console)
        except BaseException:
            if lock is not None:
                lock.release(remove_dir=lock.created_dir)  # nothing of value was written
            raise
        if main_process():
            if resuming:
                remove_incomplete(resuming.incomplete, console.print)
                keep_metrics_up_to(run.metrics, step_of(resuming.checkpoint))
                console.print(f"resuming from [bold]{resuming.checkpoint}[/]", soft_wrap=True)
            if overwrite:
                run.clear()
            start_manifest(run, config, data, resuming.checkpoint if resuming else None)
        with stop:  # Ctrl-C / SIGTERM from here to the end: a clean stop, never half a file
            return train(config, run, bundle, data, trainer, resuming, stop, console)


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


def prepare(config: RunConfig, console: Console) -> tuple[ModelBundle, PreparedData]:
    set_seed(config.train.seed)  # before the model: LoRA's initial weights come from this seed
    bundle = build_model(config.model, config.quant, config.lora, config.train.gradient_checkpointing)
    show_parameters(console, bundle, config.lora.method)
    requested_length = None if config.train.max_length == "auto" else config.train.max_length
    data = prepare_data(config.data, bundle.tokenizer, requested_length, context_length(bundle.model.config))
    show_data(console, data, bundle.tokenizer, requested_length)
    show_preflight(console, data.preflight)
    enforce(data.preflight)
    return bundle, data


def start_manifest(run: RunDir, config: RunConfig, data: PreparedData, checkpoint: Path | None) -> None:
    run.config.write_text(config_to_yaml(config))
    if checkpoint is not None:  # the original start fields stay; the resume is recorded beside them
        resumes = read_manifest(run.manifest).get("resumes", [])
        write_manifest(run.manifest, resume_record(checkpoint, resumes), drop=ENDED)
        return
    rows = {"train": data.train_stats.kept, "eval": data.eval_stats.kept if data.eval_stats else 0}
    start = start_fields(data.file_hashes, rows, config.train.seed)
    write_manifest(run.manifest, {**start, "max_length": data.max_length, "data_format": data.format})
    write_eval_split(run.eval_split, data.eval_items)


def write_eval_split(path: Path, items: list) -> None:
    """messages rows (the final assistant turn is the reference), or text rows for plain documents."""
    lines = [json.dumps({"text": item} if isinstance(item, str) else {"messages": item}) for item in items]
    write_atomically(path, "".join(line + "\n" for line in lines))


def train(
    config: RunConfig,
    run: RunDir,
    bundle: ModelBundle,
    data: PreparedData,
    trainer,
    resuming: Resume | None,
    stop: GracefulStop,
    console: Console,
) -> FinetuneResult:
    before = None
    try:
        if data.eval is not None and config.train.eval_before_training and resuming is None:
            before = trainer.evaluate()
        if stop.requested:  # during the baseline evaluation: nothing trained, nothing to resume
            write_manifest(run.manifest, {"status": "interrupted", "stopped": now(), "global_step": 0})
            return FinetuneResult(run.root, before, None, 0, interrupted=stop.requested)
        if resuming and resuming.trained_out:  # the transformers Trainer would train one step too many
            load_trained(bundle.model, resuming.checkpoint)
            step = step_of(resuming.checkpoint)
        else:
            trainer.train(resume_from_checkpoint=str(resuming.checkpoint) if resuming else None)
            step = trainer.state.global_step
            if stop.requested and step < trainer.state.max_steps:
                write_manifest(run.manifest, {"status": "interrupted", "stopped": now(), "global_step": step})
                return FinetuneResult(run.root, before, None, step, interrupted=stop.requested)
        after = final_evaluation(trainer, step) if data.eval is not None else None
        before = before or first_eval(run)
        show_before_after(console, before, after)
        if main_process():
            save_adapter(bundle, run)
            plot_loss(run.metrics, run.loss_plot, title=f"{config.model.name_or_path} · {config.lora.method}")
            best_path = trainer.state.best_model_checkpoint
            best = {"best_checkpoint": Path(best_path).name} if best_path else {}
            write_manifest(
                run.manifest, {"status": "finished", "finished": now(), "global_step": step, **best}
            )
    except KeyboardInterrupt:
        stopped = {"status": "interrupted", "stopped": now(), "global_step": trainer.state.global_step}
        write_manifest(run.manifest, stopped)
        raise
    except BaseException as exc:
        error = str(exc) if isinstance(exc, TuneforgeError) else f"{type(exc).__name__}: {exc}"
        write_manifest(run.manifest, {"status": "failed", "stopped": now(), "error": error})
        raise
    console.print(f"[bold green]done[/]: {run.root}")
    return FinetuneResult(run.root, before, after, step)


def save_adapter(bundle: ModelBundle, run: RunDir) -> None:
    """Written beside, then swapped in: a crash leaves the previous adapter or none, never half of one."""
    if not all_trained_finite(bundle.model):  # the guards stop before this; the last line of defence
        raise TuneforgeError("not saving the adapter: some trained weights are not finite")
    staging = run.root / ".adapter.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    save_trained(bundle.model, staging)
    bundle.tokenizer.save_pretrained(staging)  # carries the exact chat template used in training
    shutil.rmtree(run.adapter, ignore_errors=True)
    staging.rename(run.adapter)


def assemble_trainer(
    config: RunConfig,
    bundle: ModelBundle,
    data: PreparedData,
    run: RunDir,
    extra: list[TrainerCallback],
    console: Console,
):
    args = training_arguments(
        config.train,
        output_dir=run.checkpoints,
        dtype=bundle.dtype,
        has_eval=data.eval is not None,
        report_to=list(config.log.report_to),
    )
    guard = NonFiniteGuard(config.train.learning_rate, lambda: newest_complete(run.checkpoints))
    callbacks: list[TrainerCallback] = [
        MetricsFileCallback(run.metrics),
        RichProgressCallback(console),
        guard,
        SealCheckpoints(config.train.save_total_limit, guard),
    ]
    if config.log.tensorboard:
        tensorboard = TensorBoardCallback()  # opens its writer when training starts, after any --overwrite
        tensorboard.logging_dir = str(run.tensorboard)
        callbacks.append(tensorboard)
    return build_trainer(
        bundle.model,
        args,
        train_set=data.train,
        eval_set=data.eval,
        pad_token_id=bundle.tokenizer.pad_token_id,
        callbacks=[*callbacks, *extra],
        packing=use_packing(config.train),
        scorer=training_scorer(config, bundle, data),
        selective=config.train.loss == "selective",
    )


def training_scorer(config: RunConfig, bundle: ModelBundle, data: PreparedData):
    """Generation metrics at every evaluation, on a fixed sample of held-out rows (eval.during_training)."""
    settings = config.eval
    conversations = [item for item in data.eval_items if isinstance(item, list)][: settings.sample_size]
    if not settings.during_training or not conversations:
        return None
    decoding = Decoding(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    metrics = None if settings.metrics == "auto" else list(settings.metrics)
    return GenerationScorer(bundle.tokenizer, conversations, metrics, decoding)


def final_evaluation(trainer, step: int) -> dict:
    """Evaluate at the last step unless the periodic evaluation just did."""
    history = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if history and history[-1].get("step") == step:
        return history[-1]
    return trainer.evaluate()


def first_eval(run: RunDir) -> dict | None:
    """On resume the baseline evaluation happened in an earlier process: read it back from metrics.jsonl."""
    evals = [r for r in read_metrics(run.metrics) if "eval_loss" in r and r.get("step") == 0]
    return evals[0] if evals else None


def show_before_after(console: Console, before: dict | None, after: dict | None) -> None:
    if not (before and after):
        return
    table = Table(title="held-out loss")
    for column in ("before", "after", "change"):
        table.add_column(column, justify="right")
    b, a = before["eval_loss"], after["eval_loss"]
    table.add_row(f"{b:.4f}", f"{a:.4f}", f"{100 * (a - b) / b:+.1f}%")
    console.print(table)
