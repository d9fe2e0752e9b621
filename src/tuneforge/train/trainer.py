"""Training stage: section `train` -> a transformers Trainer with dynamic padding and length grouping.

We use the plain Trainer, not TRL's SFTTrainer: tokenization and masking are ours (data/encode.py),
and TRL 1.x adds a per-step fused LM head that also computes full-vocabulary entropy, which on CPU
measured about 2x slower for the same job (see bench/ and docs/concepts/selective-loss.md).
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    DataCollatorWithFlattening,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from tuneforge.config.schema import TrainConfig
from tuneforge.data.collate import PadCollator
from tuneforge.data.encode import IGNORE
from tuneforge.run.processes import world_size
from tuneforge.train.selective_loss import causal_lm, frozen_linear, selective_loss, supports_selective_loss


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length grouping, with an order that depends on (seed, epoch) only.

    The stock sampler draws from the global RNG when an epoch starts, so its order depends on everything
    that ran before (the baseline evaluation, for one), and a resumed process, which skips those, trains
    on other batches. Here the Trainer's `set_epoch` picks the order."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class SftTrainer(Trainer):
    """The Trainer with a resumable length-grouped order (see EpochSeededLengthGroupedSampler), the held-out
    loss per answer token and, optionally, generation metrics added to every evaluation (`scorer`: model ->
    {name: value})."""

    loss_per_answer_token = True  # the held-out loss is token-weighted; a pair's loss is not (preference)
    scorer = None
    selective = False  # compute the loss with tuneforge.train.selective_loss (set by build_trainer)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.selective or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        features = {key: value for key, value in inputs.items() if key != "labels"}
        # Divided as the Trainer's own path divides: by the accumulated item count where the model takes it.
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss = selective_loss(model, features, inputs["labels"], items)
        if self.args.average_tokens_across_devices and items is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, {"loss": loss}) if return_outputs else loss

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The held-out loss as `tuneforge eval` defines it: summed over every answer token, divided by
        their number (the Trainer's own averages each batch's mean over rows, which weighs a short answer
        like a long one)."""
        self.heldout = torch.zeros(2, dtype=torch.float64, device=self.args.device)  # loss sum, tokens
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
        )
        total = self.accelerator.reduce(self.heldout, reduction="sum")
        if self.loss_per_answer_token and total[1] > 0:
            output.metrics[f"{metric_key_prefix}_loss"] = (total[0] / total[1]).item()
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        counting = self.loss_per_answer_token and getattr(self, "heldout", None) is not None
        if counting and loss is not None and "labels" in inputs:
            tokens = (inputs["labels"][..., 1:] != IGNORE).sum()  # the positions the batch's mean is over
            self.heldout += torch.stack([loss.detach().double() * tokens, tokens.double()]).to(self.heldout)
        return loss, logits, labels

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.scorer is not None:
            generated = {f"{metric_key_prefix}_{k}": v for k, v in self.scorer(self.model).items()}
            self.log(generated)  # into metrics.jsonl and the trackers, beside the loss
            metrics.update(generated)  # where the Trainer looks for train.best_metric
        return metrics

    def _get_train_sampler(self, train_dataset: Dataset | None = None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        # Grouped per global batch, so the samples of each optimizer step do not depend on how many
        # processes share it (accelerate hands process p every world_size-th batch of this order).
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return EpochSeededLengthGroupedSampler(batch, dataset["length"], self.args.seed)


def take_means(stats: dict[str, dict[str, list[float]]], split: str, accelerator) -> dict[str, float]:
    """Each metric gathered for `split` since the last call: its mean over every value every process
    gathered (sums and counts reduced together, so processes that saw more rows weigh more). The split's
    lists start empty again."""
    gathered = stats[split]
    keys = sorted(gathered)
    sums = torch.tensor(
        [[sum(gathered[k]), len(gathered[k])] for k in keys] or [[0.0, 0.0]], dtype=torch.float64
    )
    if accelerator.num_processes > 1:
        sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
    stats[split] = defaultdict(list)
    return {k: (s / c).item() for k, (s, c) in zip(keys, sums) if c > 0}


def add_gathered(logs: dict[str, float], stats: dict[str, dict[str, list[float]]], accelerator) -> None:
    """A training log (the one with the loss) gets the training metrics gathered since the last log, an
    evaluation log (eval_ keys) the evaluation's, eval_-prefixed. In place: evaluate() returns this very
    dict, and the run's before/after table reads it."""
    split = "eval" if any(key.startswith("eval_") for key in logs) else "train"
    if "loss" in logs or split == "eval":
        prefix = "eval_" if split == "eval" else ""
        logs.update({prefix + k: v for k, v in take_means(stats, split, accelerator).items()})


def pad_collator(pad_token_id: int) -> PadCollator:
    """Dynamic padding; to a multiple of 8 on GPUs (tensor-core friendly shapes)."""
    return PadCollator(pad_token_id, pad_to_multiple_of=8 if torch.cuda.is_available() else None)


def use_packing(train: TrainConfig) -> bool:
    return train.packing == "on" or (train.packing == "auto" and torch.cuda.is_available())


def use_liger(train: TrainConfig) -> bool:
    if train.liger == "off" or not torch.cuda.is_available():
        return False
    return importlib.util.find_spec("liger_kernel") is not None


def training_arguments(
    train: TrainConfig,
    *,
    output_dir: Path,
    dtype: torch.dtype,
    has_eval: bool,
    report_to: list[str],
    eval_on_start: bool = False,
    strategy_args: dict | None = None,
) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.scheduler,
        warmup_steps=train.warmup if train.warmup < 1 else int(train.warmup),
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size or train.batch_size,
        gradient_accumulation_steps=train.grad_accumulation,
        optim=train.optimizer,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=train.eval_steps,
        # The baseline evaluation inside train(), after the model is wrapped: an evaluate() called before
        # train() marks the model prepared, and accelerate then never wraps it in DDP (no gradient sync).
        eval_on_start=eval_on_start,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=None,  # rotated by train.guards.SealCheckpoints, only once the new one is sealed
        logging_steps=train.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss must show (and stop the run), not be averaged away
        metric_for_best_model=None if train.best_metric is None else f"eval_{train.best_metric}",
        greater_is_better=train.best_metric not in (None, "loss"),
        load_best_model_at_end=train.keep_best,
        seed=train.seed,
        # what makes accelerate run several CPU processes as one DDP group (gloo); one process keeps its device
        use_cpu=not cuda and world_size() > 1,
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,  # the length column feeds the sampler; the collator drops it
        dataloader_pin_memory=cuda,
        report_to=report_to,
        disable_tqdm=True,
        use_liger_kernel=use_liger(train),
        torch_compile=train.torch_compile,
        prediction_loss_only=True,  # evaluation needs the loss only; the selective path has no logits
        **(strategy_args or {}),  # DDP, FSDP or DeepSpeed settings (tuneforge.train.distributed)
    )


def build_trainer(
    model: torch.nn.Module,
    args: TrainingArguments,
    *,
    train_set: Dataset,
    eval_set: Dataset | None,
    pad_token_id: int,
    callbacks: list[TrainerCallback],
    packing: bool = False,
    scorer=None,
    selective: bool = False,
) -> Trainer:
    if packing:
        # One row per batch, position ids restarting at each sample: transformers builds a block-diagonal
        # mask from them (or uses varlen flash attention), so samples never attend to each other.
        collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    else:
        collator = pad_collator(pad_token_id)
    trainer = SftTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our rich progress replaces the raw dict printer
    trainer.scorer = scorer
    # Only with a frozen head. A trainable head gains little (each chunk is recomputed for the head's
    # gradient), and on the quickstart its runs scattered worse in 3 of 4 (docs/concepts/selective-loss.md, "No logits where
    # nothing trains"): rounding-level differences amplified, no defect found; the reference path stays.
    head = causal_lm(model).get_output_embeddings()
    trainer.selective = selective and supports_selective_loss(model) and frozen_linear(head)
    return trainer
