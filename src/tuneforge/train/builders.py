"""The pieces every training recipe builds from, so a method's recipe holds only what is its own: the
model (seeded, sharded where the strategy says), the data stage run once per machine, the Trainer's
arguments and the run's callbacks.

    bundle = load_model(config, console)
    data = prepare_per_machine(config, bundle, lambda: prepare_data(...))
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from transformers import TrainerCallback, set_seed
from transformers.integrations import TensorBoardCallback

from tuneforge.config.schema import RunConfig
from tuneforge.data.prepared import PreparedData
from tuneforge.model.build import ModelBundle, build_model
from tuneforge.model.report import show_parameters
from tuneforge.model.start import check_same_template
from tuneforge.model.targets import resolve_targets
from tuneforge.run.checkpoints import newest_complete
from tuneforge.run.directory import RunDir
from tuneforge.run.processes import node_main_first, world_size
from tuneforge.train.callbacks import MetricsFileCallback, ProgressCallback
from tuneforge.train.distributed import resolve_strategy, strategy_arguments
from tuneforge.train.guards import NonFiniteGuard, SealCheckpoints
from tuneforge.train.selective_loss import causal_lm
from tuneforge.train.trainer import training_arguments


def load_model(config: RunConfig, console: Console) -> ModelBundle:
    set_seed(config.train.seed)  # before the model: LoRA's initial weights come from this seed
    sharded = resolve_strategy(config.distributed, world_size()) == "fsdp"
    bundle = build_model(
        config.model, config.quant, config.lora, config.train.gradient_checkpointing, sharded
    )
    show_parameters(console, bundle, config.lora.method)
    return bundle


def prepare_per_machine(
    config: RunConfig, bundle: ModelBundle, prepare_rows: Callable[[], PreparedData]
) -> PreparedData:
    """The data stage, run first by one process per machine (it fills the tokenization cache; the others
    read it). A run that continues model.adapter keeps the chat template saved with it."""
    adapter_template = bundle.tokenizer.chat_template
    with node_main_first():
        data = prepare_rows()
    if config.model.adapter:
        check_same_template(adapter_template, bundle.tokenizer.chat_template, config.model.adapter)
        data.template_source = f"the chat template saved with {config.model.adapter}"
    return data


def selective_allowed(config: RunConfig) -> bool:
    """train.loss: selective where the head is whole: sharded weights (FSDP, DeepSpeed) leave no whole
    head outside the model's forward."""
    strategy = resolve_strategy(config.distributed, world_size())
    return config.train.loss == "selective" and strategy in ("single", "ddp")


def run_arguments(config: RunConfig, bundle: ModelBundle, data: PreparedData, run: RunDir, resuming: bool):
    """The Trainer's arguments for this run: every method trains with the same schedule and checkpoints."""
    layer_classes = list(getattr(causal_lm(bundle.model), "_no_split_modules", None) or [])
    return training_arguments(
        config.train,
        output_dir=run.checkpoints,
        dtype=bundle.dtype,
        has_eval=data.eval is not None,
        eval_on_start=data.eval is not None and config.train.eval_before_training and not resuming,
        report_to=list(config.log.report_to),
        strategy_args=strategy_arguments(config.distributed, world=world_size(), layer_classes=layer_classes),
    )


def run_callbacks(config: RunConfig, run: RunDir, console: Console) -> list[TrainerCallback]:
    """metrics.jsonl, progress, the non-finite guard, sealed checkpoints and TensorBoard."""
    guard = NonFiniteGuard(config.train.learning_rate, lambda: newest_complete(run.checkpoints))
    callbacks: list[TrainerCallback] = [
        MetricsFileCallback(run.metrics),
        ProgressCallback(console),
        guard,
        SealCheckpoints(config.train.save_total_limit, guard),
    ]
    if config.log.tensorboard:
        tensorboard = TensorBoardCallback()  # opens its writer when training starts, after any --overwrite
        tensorboard.logging_dir = str(run.tensorboard)
        callbacks.append(tensorboard)
    return callbacks


def requested_length(config: RunConfig) -> int | None:
    """train.max_length as the data stage takes it: None for auto."""
    return None if config.train.max_length == "auto" else config.train.max_length


def target_matches(config: RunConfig, hf_config) -> dict[str, int]:
    """Layers matched per LoRA target name, from the architecture alone (meta device)."""
    if config.lora.method == "full":
        return {}
    return resolve_targets(hf_config, config.lora, config.model.trust_remote_code).per_name


def preflight_json(data: PreparedData) -> list[dict]:
    """The preflight results as `tuneforge data --json` prints them."""
    return [
        {"check": r.name, "passed": r.passed, "severity": r.severity, "finding": r.message}
        for r in data.preflight
    ]
