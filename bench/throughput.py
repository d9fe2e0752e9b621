"""Side-by-side CPU throughput: seed-style notebook Trainer vs TRL SFTTrainer defaults vs tuneforge.

Same model, data (first 400 ChatDoctor rows, 40 held-out rows after them), LoRA r=16 on all linear layers,
batch 4, max_length 512, lr 2e-4, one epoch. Each contender runs in its own process, so peak RSS is its
own. Held-out loss is measured the same way for all three: completion tokens only, the same prompt text.

    .venv/bin/python bench/throughput.py                 # both models, all contenders: ~16 min on 2 cores
    .venv/bin/python bench/throughput.py --models gpt2   # only the 16M Llama with the GPT-2 tokenizer

Needs ../shared (ChatDoctor, the GPT-2 tokenizer, stories260K) and trl (the dev extra); skips without them.
The last line reads `speedup_vs_seed=X speedup_vs_trl=Y` for the 16M / GPT-2 case.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHATDOCTOR = SHARED / "data" / "chatdoctor" / "chatdoctor5k.json"
PROMPT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
CONTENDERS = ("seed", "trl", "tuneforge", "tuneforge-full-logits", "tuneforge-packed")
TRAIN_ROWS, EVAL_ROWS, MAX_LEN, BATCH, LR = 400, 40, 512, 4, 2e-4


def build_models(out: Path) -> dict[str, Path]:
    """16M Llama (hidden 256, 4 layers, tied embeddings) with the real GPT-2 tokenizer, and stories260K."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(SHARED / "models" / "gpt2-tokenizer-random")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out / "llama16m-gpt2")
    tokenizer.save_pretrained(out / "llama16m-gpt2")
    return {"gpt2": out / "llama16m-gpt2", "stories": SHARED / "models" / "stories260K"}


def write_rows(out: Path) -> tuple[Path, Path]:
    rows = json.loads(CHATDOCTOR.read_text())
    pairs = [
        {"prompt": PROMPT.format(**r), "completion": r["output"]} for r in rows[: TRAIN_ROWS + EVAL_ROWS]
    ]
    train, held_out = out / "train.jsonl", out / "eval.jsonl"
    train.write_text("".join(json.dumps(p) + "\n" for p in pairs[:TRAIN_ROWS]))
    held_out.write_text("".join(json.dumps(p) + "\n" for p in pairs[TRAIN_ROWS:]))
    return train, held_out


# ---- inside one contender's process ---------------------------------------------------------------


class CountingCollator:
    """Wraps a collator to count real (attended) and computed (padded) tokens of every training batch."""

    def __init__(self, inner):
        self.inner, self.real, self.computed = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        self.computed += ids.numel()
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        return batch


def lora_config():
    from peft import LoraConfig

    return LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )


def seed_style(model_dir: Path, train: Path):
    """What the notebooks write: pad=eos, padding='max_length', DataCollatorForLanguageModeling, Trainer."""
    from datasets import load_dataset
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    rows = load_dataset("json", data_files=str(train), split="train")
    rows = rows.map(
        lambda r: tokenizer(
            r["prompt"] + r["completion"], padding="max_length", truncation=True, max_length=MAX_LEN
        ),
        remove_columns=rows.column_names,
    )
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora_config())
    collator = CountingCollator(DataCollatorForLanguageModeling(tokenizer, mlm=False))
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=BATCH,
        num_train_epochs=1,
        learning_rate=LR,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    return (
        Trainer(model=model, args=args, train_dataset=rows, data_collator=collator),
        model,
        tokenizer,
        collator,
    )


def trl_default(model_dir: Path, train: Path):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = load_dataset("json", data_files=str(train), split="train")
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=BATCH,
        num_train_epochs=1,
        learning_rate=LR,
        max_length=MAX_LEN,
        bf16=False,  # the only change from TRL's defaults: bf16 is unsupported or slow on CPU
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=lora_config()
    )
    trainer.data_collator = collator = CountingCollator(trainer.data_collator)
    return trainer, trainer.model, tokenizer, collator


def tuneforge_path(model_dir: Path, train: Path, packing: bool = False, loss: str = "selective"):
    """tuneforge's own stages with the settings `tuneforge train` uses by default on CPU."""
    from tuneforge.config.schema import DataConfig, LoraConfig, ModelConfig, QuantConfig, TrainConfig
    from tuneforge.data.prepare import prepare_data
    from tuneforge.model.build import build_model
    from tuneforge.train.trainer import build_trainer, training_arguments

    lora = LoraConfig(r=16, alpha=32, dropout=0.05)
    bundle = build_model(ModelConfig(name_or_path=str(model_dir)), QuantConfig(), lora, False)
    # The prompt text is already rendered; the raw template keeps it identical to the other contenders.
    data_cfg = DataConfig(path=str(train), format="prompt_completion", eval_fraction=0, template="raw")
    data = prepare_data(data_cfg, bundle.tokenizer, MAX_LEN)
    train_cfg = TrainConfig(
        epochs=1,
        learning_rate=LR,
        batch_size=BATCH,
        max_length=MAX_LEN,
        warmup=0,
        save_steps=10**6,
        loss=loss,
    )
    args = training_arguments(
        train_cfg, output_dir=Path(tempfile.mkdtemp()), dtype=bundle.dtype, has_eval=False, report_to=[]
    )
    trainer = build_trainer(
        bundle.model,
        args,
        train_set=data.train,
        eval_set=None,
        pad_token_id=bundle.tokenizer.pad_token_id,
        callbacks=[],
        packing=packing,
        selective=loss == "selective",
    )
    trainer.data_collator = collator = CountingCollator(trainer.data_collator)
    return trainer, bundle.model, bundle.tokenizer, collator


def held_out_loss(model, tokenizer, held_out: Path) -> float:
    """Mean cross-entropy over completion tokens (+ EOS) of the held-out rows; the same for every contender."""
    import torch

    model.eval()
    total, count = 0.0, 0
    for line in held_out.read_text().splitlines():
        row = json.loads(line)
        prompt = tokenizer(row["prompt"]).input_ids
        completion = tokenizer(row["completion"], add_special_tokens=False).input_ids + [
            tokenizer.eos_token_id
        ]
        ids = (prompt + completion)[:MAX_LEN]
        labels = ([-100] * len(prompt) + completion)[:MAX_LEN]
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        n = sum(1 for label in labels[1:] if label != -100)
        total, count = total + out.loss.item() * n, count + n
    return total / max(count, 1)


def run_one(contender: str, model_dir: Path, train: Path, held_out: Path) -> dict:
    build = {
        "seed": seed_style,
        "trl": trl_default,
        "tuneforge": tuneforge_path,
        "tuneforge-full-logits": lambda m, t: tuneforge_path(m, t, loss="full_logits"),
        "tuneforge-packed": lambda m, t: tuneforge_path(m, t, packing=True),
    }[contender]
    trainer, model, tokenizer, collator = build(model_dir, train)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "real_tokens_per_s": collator.real / seconds,
        "padding": 1 - collator.real / max(collator.computed, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "held_out_loss": held_out_loss(model, tokenizer, held_out),
    }


# ---- the parent process ---------------------------------------------------------------------------


def print_table(name: str, results: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{name}: {TRAIN_ROWS} ChatDoctor rows, 1 epoch, LoRA r=16, batch {BATCH}, max_length {MAX_LEN}"
    )
    for column in (
        "contender",
        "wall s",
        "real tok/s",
        "padding",
        "peak RSS MB",
        "held-out loss",
        "tok/s vs seed",
    ):
        table.add_column(column, justify="right")
    seed = results["seed"]["real_tokens_per_s"] if "seed" in results else None
    for contender, r in results.items():
        table.add_row(
            contender,
            f"{r['seconds']:.1f}",
            f"{r['real_tokens_per_s']:.0f}",
            f"{r['padding']:.0%}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['held_out_loss']:.4f}",
            f"{r['real_tokens_per_s'] / seed:.2f}x" if seed else "-",
        )
    Console().print(table)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["gpt2", "stories"], choices=["gpt2", "stories"])
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument(
        "--child", nargs=4, metavar=("CONTENDER", "MODEL", "TRAIN", "EVAL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        contender, model_dir, train, held_out = args.child
        print(json.dumps(run_one(contender, Path(model_dir), Path(train), Path(held_out))))
        return 0
    if not CHATDOCTOR.is_file():
        print(f"skipped: {CHATDOCTOR} not found (../shared is needed for this bench)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    models, (train, held_out) = build_models(work), write_rows(work)
    summary = {}
    for name in args.models:
        results = {}
        for contender in args.contenders:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                contender,
                str(models[name]),
                str(train),
                str(held_out),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:])
                return 1
            results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
        print_table(name, results)
        summary[name] = results
    if "gpt2" in summary and {"seed", "trl", "tuneforge"} <= set(summary["gpt2"]):
        r = summary["gpt2"]
        tf = r["tuneforge"]["real_tokens_per_s"]
        if "tuneforge-full-logits" in r:
            print(f"speedup_vs_full_logits={tf / r['tuneforge-full-logits']['real_tokens_per_s']:.2f}")
        print(
            f"speedup_vs_seed={tf / r['seed']['real_tokens_per_s']:.2f} speedup_vs_trl={tf / r['trl']['real_tokens_per_s']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
