"""The GRPO recipe (train.method grpo): reinforcement learning from the user's own checks, run by
`train/run.py` like every method.

model (+ model.adapter: the SFT run to continue) -> prompt rows encoded by the one encoder (the data
stage's prompts track) -> the rewards of grpo.rewards, loaded and tried on each row's reference answer ->
GrpoTrainer (rollouts through the inference engine, group advantages, the GRPO loss) -> the same run
directory, manifest, metrics and reports as SFT.

    tuneforge train examples/grpo_quickstart.yaml
"""

from __future__ import annotations

from rich.console import Console
from transformers import PrinterCallback

from tuneforge.config.grpo import rewards_refusal
from tuneforge.config.schema import RunConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.preflight import enforce
from tuneforge.data.prepare import prepare_data
from tuneforge.data.prepared import PreparedData
from tuneforge.data.prompts import PROMPTS
from tuneforge.data.report import show_preflight
from tuneforge.model.load import context_length
from tuneforge.model.plan import Rollouts
from tuneforge.run.plots import plot_rewards
from tuneforge.train.builders import (
    load_model,
    prepare_per_machine,
    requested_length,
    run_arguments,
    run_callbacks,
    target_matches,
)
from tuneforge.train.grpo_report import reward_check, show_prompts, summary
from tuneforge.train.grpo_trainer import GrpoTrainer, rows_collator
from tuneforge.train.preference import disable_dropout
from tuneforge.train.recipe import Recipe
from tuneforge.train.rewards import build_rewards


class GrpoRecipe(Recipe):
    name = "grpo"
    section = "grpo"

    def steps_per_checkpoint(self, config: RunConfig) -> int:
        return config.grpo.iterations  # optimizer passes over one batch of rollouts

    def rollouts(self, config: RunConfig) -> Rollouts:
        grpo = config.grpo
        sequences = grpo.prompts_per_step * grpo.group_size
        together = min(sequences, config.eval.batch_size * grpo.group_size)  # see GrpoTrainer.complete
        # beyond training's: the KL reference every step, the old log-probs once per group of passes
        forwards = (1.0 if grpo.beta > 0 else 0.0) + (1 / grpo.iterations if grpo.iterations > 1 else 0.0)
        return Rollouts(sequences, together, grpo.max_completion_tokens, grpo.iterations, forwards)

    def rows_per_device(self, config: RunConfig) -> int:
        return config.grpo.prompts_per_step  # prompts; each brings grpo.group_size rollouts

    def refuse(self, config: RunConfig) -> list[str]:
        grpo, train, reasons = config.grpo, config.train, []
        if problem := rewards_refusal(grpo):
            reasons.append(problem)
        for key in ("save_steps", "max_steps"):
            if (value := getattr(train, key)) and value % grpo.iterations:
                reasons.append(
                    f"train.{key} ({value}) must be a multiple of grpo.iterations ({grpo.iterations}): a "
                    "checkpoint inside a batch of rollouts could not resume it exactly"
                )
        if grpo.beta > 0 and config.lora.method == "full":
            reasons.append(
                "grpo.beta > 0 with lora.method full: the KL reference would be a second copy of the whole "
                "model, which tuneforge does not keep; set grpo.beta: 0 or train a LoRA adapter"
            )
        if train.grad_accumulation != 1:
            reasons.append(
                "train.grad_accumulation: a GRPO step is grpo.prompts_per_step prompts; leave it at 1"
            )
        if config.eval.during_training or train.packing == "on" or train.best_metric is not None:
            reasons.append(
                "train.method=grpo: eval.during_training, train.packing and train.best_metric are for sft "
                "runs; GRPO evaluates held-out rewards at every evaluation"
            )
        if grpo.iterations > 1 and not train.max_steps and train.epochs != int(train.epochs):
            reasons.append(
                f"train.epochs {train.epochs:g} with grpo.iterations {grpo.iterations}: a part of an epoch could "
                "end inside a batch of rollouts; give whole epochs or train.max_steps (a multiple)"
            )
        if config.distributed.strategy in ("fsdp", "deepspeed"):
            reasons.append(
                f"distributed.strategy {config.distributed.strategy}: train.method=grpo runs on ddp (it generates "
                "with whole weights on each process, and steps once per batch of rollouts where DeepSpeed "
                "would step once per micro-batch)"
            )
        return reasons

    def prepare_data(self, config, tokenizer, max_length, context_length) -> PreparedData:
        return prepare_data(config.data, tokenizer, max_length, context_length, track=PROMPTS)

    def prepare(self, config: RunConfig, console: Console):
        rewards = build_rewards(config.grpo.rewards)  # a broken reward file fails before the model loads
        bundle = load_model(config, console)
        if switched_off := disable_dropout(bundle.model):
            console.print(f"dropout off in {switched_off} layers: rollouts and the loss see one model")
        limit = context_length(bundle.model.config)
        data = prepare_per_machine(
            config,
            bundle,
            lambda: self.prepare_data(config, bundle.tokenizer, requested_length(config), limit),
        )
        data.preflight.append(reward_check(rewards, data))
        report = summary(config, data)
        grpo = config.grpo
        console.print(
            f"each step: {grpo.prompts_per_step} prompts × {grpo.group_size} sampled answers = "
            f"{grpo.prompts_per_step * grpo.group_size} rollouts per process, {config.train.batch_size} per "
            f"forward pass; loss {grpo.loss}, beta {grpo.beta:g}"
        )
        show_prompts(console, data, bundle.tokenizer, report, n=1)
        show_preflight(console, data.preflight)
        enforce(data.preflight)
        return bundle, data

    def assemble(self, config, bundle, data, run, callbacks, console, resuming):
        # one optimizer step: prompts_per_step prompts per process; completions are micro-batched inside
        per_step = config.train.model_copy(
            update={"batch_size": config.grpo.prompts_per_step, "group_by_length": False}
        )
        args = run_arguments(config.model_copy(update={"train": per_step}), bundle, data, run, resuming)
        trainer = GrpoTrainer(
            model=bundle.model,
            args=args,
            train_dataset=data.train,
            eval_dataset=held_out(data, config.eval.max_rows),
            data_collator=rows_collator,
            callbacks=[*run_callbacks(config, run, console), *callbacks],
            grpo=config.grpo,
            rewards=build_rewards(config.grpo.rewards),
            encoder=ChatEncoder(bundle.tokenizer),
            micro_batch=config.train.batch_size,
            generation_prompts=config.eval.batch_size,
            reference_is_start=bool(config.model.adapter),
        )
        trainer.remove_callback(PrinterCallback)
        return trainer

    def manifest_fields(self, config: RunConfig, data: PreparedData) -> dict:
        return {
            "grpo": {"rewards": [reward.label for reward in config.grpo.rewards], "loss": config.grpo.loss}
        }

    def data_report(self, config, data, hf_config) -> dict:
        rewards = build_rewards(config.grpo.rewards)
        data.preflight.append(reward_check(rewards, data))
        checks = [vars(check) for check in data.preflight]
        return summary(config, data) | {
            "preflight": checks,
            "lora_targets": target_matches(config, hf_config),
        }

    def show_data(self, console, data, tokenizer, report, n) -> None:
        show_prompts(console, data, tokenizer, report, n)
        show_preflight(console, data.preflight)

    def plots(self, run, title: str) -> None:
        plot_rewards(run.metrics, run.rewards_plot, title=title)


def held_out(data: PreparedData, max_rows: int | None):
    """The held-out prompts each evaluation answers (eval.max_rows of them, when set)."""
    if data.eval is None or not max_rows:
        return data.eval
    return data.eval.select(range(min(max_rows, len(data.eval))))


GRPO = GrpoRecipe()
