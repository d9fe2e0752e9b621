"""The preference-tuning recipe (train.method dpo, simpo, orpo, kto), run by `run_finetune` like SFT.

model (+ model.adapter: the SFT run to continue) -> preference rows encoded and checked through the one
encoder -> the reference log-probs of every answer, computed once by the starting model and saved with
the run (dpo, kto) -> PreferenceTrainer -> the same run directory, manifest, metrics and reports as SFT.

    tuneforge train examples/dpo_ultrafeedback.yaml
    tuneforge train my_dpo.yaml --set model.adapter=runs/my_sft --set train.method=dpo
"""

from __future__ import annotations

import json

import torch
from rich.console import Console
from transformers import PrinterCallback

from tuneforge.config.preference import beta_for
from tuneforge.config.schema import RunConfig
from tuneforge.data.pair_report import pair_summary, show_pair_summary, show_pairs
from tuneforge.data.preflight import enforce
from tuneforge.data.prepare_pairs import PreparedPairs, prepare_pairs
from tuneforge.data.report import show_preflight
from tuneforge.errors import TuneforgeError
from tuneforge.model.build import ModelBundle
from tuneforge.model.load import context_length
from tuneforge.run.directory import RunDir
from tuneforge.run.files import write_atomically
from tuneforge.train.preference_trainer import (
    REFERENCE_FREE,
    PreferenceCollator,
    PreferenceTrainer,
    branch_names,
    reference_logps,
)
from tuneforge.train.preview import requested_length
from tuneforge.train.sft import (
    Recipe,
    load_model,
    prepare_per_machine,
    run_arguments,
    run_callbacks,
    selective_allowed,
)
from tuneforge.train.trainer import pad_collator


def prepare(config: RunConfig, console: Console) -> tuple[ModelBundle, PreparedPairs]:
    bundle = load_model(config, console)
    if switched_off := disable_dropout(bundle.model):
        console.print(
            f"dropout off in {switched_off} layers: the policy is compared with the reference, which scores "
            "without dropout (as TRL's disable_dropout)"
        )
    method, limit = config.train.method, context_length(bundle.model.config)
    data = prepare_per_machine(
        config,
        bundle,
        lambda: prepare_pairs(config.data, method, bundle.tokenizer, requested_length(config), limit),
    )
    show_pair_summary(console, pair_summary(data, requested_length(config)))
    show_pairs(console, data, bundle.tokenizer, n=1)
    show_preflight(console, data.preflight)
    enforce(data.preflight)
    beta = beta_for(config.train.method, config.preference)
    console.print(f"method: [bold]{config.train.method}[/], beta {beta} ({reference_note(config)})")
    return bundle, data


def disable_dropout(model: torch.nn.Module) -> int:
    """Sets every dropout to p=0 (LoRA's included); returns how many had p > 0."""
    switched = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p > 0:
            module.p = 0.0
            switched += 1
    return switched


def reference_note(config: RunConfig) -> str:
    if config.train.method in REFERENCE_FREE:
        return "no reference model"
    start = config.model.adapter or "the base model"
    return f"reference: {start}, frozen as it is before the first step"


def collator(bundle: ModelBundle, data: PreparedPairs) -> PreferenceCollator:
    return PreferenceCollator(pad_collator(bundle.tokenizer.pad_token_id), branch_names(data.train))


def attach_reference(
    config: RunConfig, run: RunDir, bundle: ModelBundle, data: PreparedPairs, resuming: bool
):
    """dpo and kto compare with the starting model: score every answer with it once, before any update. This
    runs before the Trainer loads a checkpoint, so the model is still the starting one; on resume the
    numbers the first start saved are read back instead of scoring the data again."""
    if config.train.method in REFERENCE_FREE:
        return
    splits = {"train": data.train, "eval": data.eval}
    if resuming:
        reference = read_reference(run, {k: len(v) for k, v in splits.items() if v is not None})
    else:
        batch = config.train.eval_batch_size or config.train.batch_size
        scorer = collator(bundle, data)
        reference = {
            k: reference_logps(bundle.model, v, scorer, batch, selective_allowed(config))
            for k, v in splits.items()
            if v is not None
        }
    data.reference = reference
    data.train = data.train.add_column("reference", reference["train"])
    if data.eval is not None:
        data.eval = data.eval.add_column("reference", reference["eval"])


def read_reference(run: RunDir, rows: dict[str, int]) -> dict[str, list]:
    if not run.reference_logps.is_file():
        raise TuneforgeError(f"--resume: {run.reference_logps} is missing; the reference cannot be rebuilt")
    saved = json.loads(run.reference_logps.read_text())
    if {k: len(v) for k, v in saved.items()} != rows:
        raise TuneforgeError(f"--resume: {run.reference_logps} does not match the data's rows; start anew")
    return saved


def write_reference(run: RunDir, data: PreparedPairs) -> None:
    if getattr(data, "reference", None) is not None:
        write_atomically(run.reference_logps, json.dumps(data.reference))


def assemble(
    config: RunConfig, bundle, data: PreparedPairs, run: RunDir, extra, console: Console, resuming: bool
):
    trainer = PreferenceTrainer(
        model=bundle.model,
        args=run_arguments(config, bundle, data, run, resuming),
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=collator(bundle, data),
        callbacks=[*run_callbacks(config, run, console), *extra],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.selective = selective_allowed(config)
    settings = config.preference
    trainer.method = config.train.method
    trainer.beta, trainer.simpo_gamma = beta_for(config.train.method, settings), settings.simpo_gamma
    trainer.kto_weights = (settings.kto_desirable_weight, settings.kto_undesirable_weight)
    return trainer


PREFERENCE = Recipe(prepare, assemble, before_start=attach_reference, write_start=write_reference)
