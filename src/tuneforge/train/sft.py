"""The supervised fine-tuning recipe: a whole run config in, a finished run directory out. Reads top to bottom.

from tuneforge.config.loading import load_config
from tuneforge.train.sft import run_finetune
run_finetune(load_config("examples/quickstart.yaml"), "runs/quickstart")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
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
from tuneforge.model.build import ModelBundle, build_model, save_trained
from tuneforge.model.load import context_length
from tuneforge.model.report import show_parameters
from tuneforge.run.directory import RunDir
from tuneforge.run.manifest import now, start_fields, write_manifest
from tuneforge.run.metrics import keep_metrics_up_to, read_metrics
from tuneforge.run.plots import plot_loss
from tuneforge.train.callbacks import MetricsFileCallback, RichProgressCallback
from tuneforge.train.trainer import build_trainer, training_arguments, use_packing

# Keys that may change between a run and its --resume; anything else would silently mix two experiments.
RESUMABLE_CHANGES = {"max_steps", "epochs", "eval_steps", "save_steps", "logging_steps", "save_total_limit"}


@dataclass
class FinetuneResult:
    run_dir: Path
    eval_before: dict | None
    eval_after: dict | None
    global_step: int


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
    checkpoint = run.prepare(resume=resume, overwrite=overwrite)
    if checkpoint is not None:
        check_resumable(run, config)
        keep_metrics_up_to(run.metrics, int(checkpoint.name.split("-")[-1]))
        console.print(f"resuming from [bold]{checkpoint}[/]", soft_wrap=True)
    run.config.write_text(config_to_yaml(config))

    set_seed(config.train.seed)  # before the model: LoRA's initial weights come from this seed
    bundle = build_model(config.model, config.quant, config.lora, config.train.gradient_checkpointing)
    show_parameters(console, bundle, config.lora.method)
    requested_length = None if config.train.max_length == "auto" else config.train.max_length
    data = prepare_data(config.data, bundle.tokenizer, requested_length, context_length(bundle.model.config))
    show_data(console, data, bundle.tokenizer, requested_length)
    show_preflight(console, data.preflight)
    enforce(data.preflight)
    rows = {"train": data.train_stats.kept, "eval": data.eval_stats.kept if data.eval_stats else 0}
    start = start_fields(data.file_hashes, rows, config.train.seed)
    write_manifest(run.manifest, {**start, "max_length": data.max_length, "data_format": data.format})

    trainer = assemble_trainer(config, bundle, data, run, [*extra_callbacks], console)

    before = None
    if data.eval is not None and config.train.eval_before_training and checkpoint is None:
        before = trainer.evaluate()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    after = final_evaluation(trainer) if data.eval is not None else None
    before = before or first_eval(run)
    show_before_after(console, before, after)

    save_trained(bundle.model, run.adapter)
    bundle.tokenizer.save_pretrained(run.adapter)  # carries the exact chat template used in training
    plot_loss(run.metrics, run.loss_plot, title=f"{config.model.name_or_path} · {config.lora.method}")
    write_manifest(
        run.manifest, {"status": "finished", "finished": now(), "global_step": trainer.state.global_step}
    )
    console.print(f"[bold green]done[/]: {run.root}")
    return FinetuneResult(run.root, before, after, trainer.state.global_step)


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
    callbacks: list[TrainerCallback] = [MetricsFileCallback(run.metrics), RichProgressCallback(console)]
    if config.log.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(str(run.tensorboard))))
    return build_trainer(
        bundle.model,
        args,
        train_set=data.train,
        eval_set=data.eval,
        pad_token_id=bundle.tokenizer.pad_token_id,
        callbacks=[*callbacks, *extra],
        packing=use_packing(config.train),
    )


def final_evaluation(trainer) -> dict:
    """Evaluate at the last step unless the periodic evaluation just did."""
    history = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if history and history[-1].get("step") == trainer.state.global_step:
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


def check_resumable(run: RunDir, config: RunConfig) -> None:
    if not run.config.is_file():
        return
    saved = yaml.safe_load(run.config.read_text())
    current = yaml.safe_load(config_to_yaml(config))
    changed = [
        f"{section}.{key}"
        for section, values in current.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if saved.get(section, {}).get(key) != value and not (section == "train" and key in RESUMABLE_CHANGES)
    ]
    if changed:
        raise TuneforgeError(
            f"--resume with a different config: {', '.join(changed)} changed since {run.config} was written. "
            "Resume with the same settings, or start a new run with --overwrite or --output-dir."
        )
