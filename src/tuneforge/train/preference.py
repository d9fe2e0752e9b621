"""The preference-tuning recipes (train.method dpo, simpo, orpo, kto), run by `train/run.py` like SFT.

model (+ model.adapter: the SFT run to continue) -> preference rows encoded and checked through the one
encoder (the data stage's pairs track) -> the reference log-probs of every answer, computed once by the
starting model and saved with the run (dpo, kto) -> PreferenceTrainer -> the same run directory, manifest,
metrics and reports as SFT.

    tuneforge train examples/dpo_ultrafeedback.yaml
    tuneforge train my_dpo.yaml --set model.adapter=runs/my_sft --set train.method=dpo
"""

from __future__ import annotations

import json

import torch
from rich.console import Console
from transformers import PrinterCallback

from tuneforge.config.schema import RunConfig
from tuneforge.data.pairs.report import pair_summary, show_pair_summary, show_pairs
from tuneforge.data.pairs.track import KTO, PAIRS, PairsTrack
from tuneforge.data.preflight import enforce
from tuneforge.data.prepare import prepare_data
from tuneforge.data.prepared import PreparedData
from tuneforge.data.report import show_preflight
from tuneforge.errors import TuneforgeError
from tuneforge.model.build import ModelBundle
from tuneforge.model.load import context_length
from tuneforge.run.directory import RunDir
from tuneforge.run.files import write_atomically
from tuneforge.run.plots import plot_rewards
from tuneforge.train.builders import (
    load_model,
    prepare_per_machine,
    requested_length,
    run_arguments,
    run_callbacks,
    selective_allowed,
    target_matches,
)
from tuneforge.train.preference_trainer import (
    PreferenceCollator,
    PreferenceTrainer,
    branch_names,
    reference_logps,
)
from tuneforge.train.recipe import Recipe
from tuneforge.train.trainer import pad_collator


class PreferenceRecipe(Recipe):
    """One preference method: its loss (`preference_loss.py`, chosen by name), its row shape, whether it
    compares with a frozen reference, and its usual beta (TRL's defaults)."""

    section = "preference"

    def __init__(self, name: str, track: PairsTrack, reference: bool, usual_beta: float):
        self.name, self.track, self.reference, self.usual_beta = name, track, reference, usual_beta
        # one forward scores chosen and rejected: 2 sequences a pair; a KTO row is one sequence
        self.sequences_per_row = 2 if track is PAIRS else 1

    def beta(self, config: RunConfig) -> float:
        return config.preference.beta if config.preference.beta is not None else self.usual_beta

    def refuse(self, config: RunConfig) -> list[str]:
        data, distributed, reasons = config.data, config.distributed, []
        if data.format != "auto":
            reasons.append(
                f"train.method={self.name} reads preference rows by their columns (data.columns.prompt, "
                "chosen, rejected, completion, label): leave data.format out (in data.mix too, each source "
                "is read by its columns)"
            )
        sharded = distributed.strategy == "fsdp" or (
            distributed.strategy == "deepspeed" and distributed.zero_stage == 3
        )
        if self.reference and sharded:
            reasons.append(
                f"train.method={self.name} scores every answer with the starting model before training, "
                "which needs whole weights on each process: use distributed.strategy ddp (or deepspeed "
                "zero_stage 2), or a reference-free method (simpo, orpo)"
            )
        if config.eval.during_training or config.train.packing == "on":
            reasons.append(
                f"train.method={self.name}: eval.during_training and train.packing are for sft runs; score "
                "the finished run with tuneforge eval"
            )
        return reasons

    def prepare_data(self, config, tokenizer, max_length, context_length) -> PreparedData:
        return prepare_data(config.data, tokenizer, max_length, context_length, track=self.track)

    def prepare(self, config: RunConfig, console: Console) -> tuple[ModelBundle, PreparedData]:
        bundle = load_model(config, console)
        if switched_off := disable_dropout(bundle.model):
            console.print(
                f"dropout off in {switched_off} layers: the policy is compared with the reference, which "
                "scores without dropout (as TRL's disable_dropout)"
            )
        limit = context_length(bundle.model.config)
        data = prepare_per_machine(
            config,
            bundle,
            lambda: self.prepare_data(config, bundle.tokenizer, requested_length(config), limit),
        )
        show_pair_summary(console, pair_summary(data, requested_length(config)))
        show_pairs(console, data, bundle.tokenizer, n=1)
        show_preflight(console, data.preflight)
        enforce(data.preflight)
        console.print(
            f"method: [bold]{self.name}[/], beta {self.beta(config)} ({self.reference_note(config)})"
        )
        return bundle, data

    def reference_note(self, config: RunConfig) -> str:
        if not self.reference:
            return "no reference model"
        start = config.model.adapter or "the base model"
        return f"reference: {start}, frozen as it is before the first step"

    def before_start(self, config, run, bundle, data, resuming) -> None:
        """dpo and kto compare with the starting model: score every answer with it once, before any update.
        This runs before the Trainer loads a checkpoint, so the model is still the starting one; on resume
        the numbers the first start saved are read back instead of scoring the data again."""
        if not self.reference:
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
        data.train = data.train.add_column("reference", reference["train"])
        if data.eval is not None:
            data.eval = data.eval.add_column("reference", reference["eval"])

    def write_start(self, run: RunDir, data: PreparedData) -> None:
        if "reference" in data.train.column_names:
            splits = {"train": data.train, "eval": data.eval}
            saved = {k: [list(r) for r in v["reference"]] for k, v in splits.items() if v is not None}
            write_atomically(run.reference_logps, json.dumps(saved))

    def assemble(self, config, bundle, data, run, callbacks, console, resuming):
        trainer = PreferenceTrainer(
            model=bundle.model,
            args=run_arguments(config, bundle, data, run, resuming),
            train_dataset=data.train,
            eval_dataset=data.eval,
            data_collator=collator(bundle, data),
            callbacks=[*run_callbacks(config, run, console), *callbacks],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.selective = selective_allowed(config)
        settings = config.preference
        trainer.method = self.name
        trainer.beta, trainer.simpo_gamma = self.beta(config), settings.simpo_gamma
        trainer.kto_weights = (settings.kto_desirable_weight, settings.kto_undesirable_weight)
        return trainer

    def manifest_fields(self, config: RunConfig, data: PreparedData) -> dict:
        return {"preference": {"method": self.name, "rows": data.format}}

    def data_report(self, config, data, hf_config) -> dict:
        return pair_summary(data, requested_length(config)) | {
            "lora_targets": target_matches(config, hf_config)
        }

    def show_data(self, console, data, tokenizer, report, n) -> None:
        """Both branches shown, trained tokens highlighted in each."""
        show_pairs(console, data, tokenizer, n)
        show_pair_summary(console, report)
        show_preflight(console, data.preflight)

    def plots(self, run: RunDir, title: str) -> None:
        plot_rewards(run.metrics, run.rewards_plot, title=title)


def disable_dropout(model: torch.nn.Module) -> int:
    """Sets every dropout to p=0 (LoRA's included); returns how many had p > 0."""
    switched = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p > 0:
            module.p = 0.0
            switched += 1
    return switched


def collator(bundle: ModelBundle, data: PreparedData) -> PreferenceCollator:
    return PreferenceCollator(pad_collator(bundle.tokenizer.pad_token_id), branch_names(data.train))


def read_reference(run: RunDir, rows: dict[str, int]) -> dict[str, list]:
    if not run.reference_logps.is_file():
        raise TuneforgeError(f"--resume: {run.reference_logps} is missing; the reference cannot be rebuilt")
    saved = json.loads(run.reference_logps.read_text())
    if {k: len(v) for k, v in saved.items()} != rows:
        raise TuneforgeError(f"--resume: {run.reference_logps} does not match the data's rows; start anew")
    return saved


DPO = PreferenceRecipe("dpo", PAIRS, reference=True, usual_beta=0.1)
SIMPO = PreferenceRecipe("simpo", PAIRS, reference=False, usual_beta=2.0)
ORPO = PreferenceRecipe("orpo", PAIRS, reference=False, usual_beta=0.1)
KTO_RECIPE = PreferenceRecipe("kto", KTO, reference=True, usual_beta=0.1)
