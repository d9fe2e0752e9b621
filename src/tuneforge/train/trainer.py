"""Training stage: section `train` -> a transformers Trainer with dynamic padding and length grouping.

We use the plain Trainer, not TRL's SFTTrainer: tokenization and masking are ours (data/encode.py),
and TRL 1.x adds a per-step fused LM head that also computes full-vocabulary entropy, which on CPU
measured about 2x slower for the same job (see bench/ and the README).
"""

from __future__ import annotations

import importlib.util
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

from tuneforge.config.schema import TrainConfig
from tuneforge.data.collate import PadCollator


def use_packing(train: TrainConfig) -> bool:
    return train.packing == "on" or (train.packing == "auto" and torch.cuda.is_available())


def use_liger(train: TrainConfig) -> bool:
    if train.liger == "off" or not torch.cuda.is_available():
        return False
    return importlib.util.find_spec("liger_kernel") is not None


def training_arguments(
    train: TrainConfig, *, output_dir: Path, dtype: torch.dtype, has_eval: bool, report_to: list[str]
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
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        logging_steps=train.logging_steps,
        logging_first_step=True,
        seed=train.seed,
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
) -> Trainer:
    if packing:
        # One row per batch, position ids restarting at each sample: transformers builds a block-diagonal
        # mask from them (or uses varlen flash attention), so samples never attend to each other.
        collator = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    else:
        collator = PadCollator(pad_token_id, pad_to_multiple_of=8 if torch.cuda.is_available() else None)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our rich progress replaces the raw dict printer
    return trainer
