"""GRPO on CPU: tuneforge's recipe against TRL's `GRPOTrainer`, one after the other, same work.

The same tiny random Llama (hidden 256, 4 layers, LoRA r=16 on all linear layers), the same demo requests
as prompts (TRL gets them rendered with the alpaca template tuneforge uses, so the prompt tokens match),
4 prompts x 8 sampled completions of exactly 32 tokens per optimizer step (a random model never ends an
answer; EOS is masked for both, so every step generates 1,024 tokens), temperature 1, the DAPO loss, beta
0, the same reward function, 32 completions per forward/backward, one optimizer pass per generation. Each
trainer runs in its own process; the first step warms up and is not timed.

    .venv/bin/python bench/grpo_step.py              # ~4 min on 2 cores
    .venv/bin/python bench/grpo_step.py --steps 4    # quicker, noisier

Rollout tokens/s is the step's generated tokens over the step's wall time (generation, scoring and the
update together). The last line reads `speedup_vs_trl=X` (TRL's seconds per step over tuneforge's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS, GROUP, NEW_TOKENS, LR = 4, 8, 32, 1e-5
REWARD = '''
def vowels(prompts, completions, rows):
    """The share of vowels in the answer: any float per completion does; both trainers call this."""
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]
'''


def setup(folder: Path) -> dict:
    """The model, the rows and the reward file, written once for both trainers."""
    from tuneforge_dev.demo_data import write_demo_dataset
    from tuneforge_dev.tiny_model import TinySize, build_tiny_model

    model = build_tiny_model(folder / "model", "llama", TinySize(hidden=256, layers=4, heads=4, kv_heads=4))
    write_demo_dataset(folder / "data")
    (folder / "reward.py").write_text(REWARD)
    return {
        "model": str(model),
        "rows": str(folder / "data" / "train.jsonl"),
        "reward": str(folder / "reward.py"),
    }


class StepClock:
    """A TrainerCallback's hook: the time at each optimizer step's end."""

    def __init__(self):
        self.ends = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def tuneforge_run(paths: dict, steps: int, folder: Path) -> list[float]:
    from transformers import TrainerCallback

    from tuneforge.config.loading import validate_config
    from tuneforge.train.run import run_finetune

    clock = type("Clock", (StepClock, TrainerCallback), {})()
    config = validate_config({
        "model": {"name_or_path": paths["model"]},
        "data": {"path": paths["rows"], "format": "prompt_completion", "template": "alpaca",
                 "preflight": {"overlap": "off"}},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
        "train": {"method": "grpo", "max_steps": steps + 1, "batch_size": PROMPTS * GROUP, "learning_rate": LR,
                  "warmup": 0.0, "logging_steps": 1, "save_steps": 1000, "eval_steps": 1000},
        "eval": {"batch_size": PROMPTS, "max_rows": 1},
        "grpo": {"group_size": GROUP, "prompts_per_step": PROMPTS, "max_completion_tokens": NEW_TOKENS,
                 "mask_truncated": False, "loss": "dapo",
                 "rewards": [{"kind": "python", "file": paths["reward"], "function": "vowels"}]},
    })  # fmt: skip
    run_finetune(config, folder / "tuneforge_run", extra_callbacks=[clock], overwrite=True)
    return clock.ends


def trl_run(paths: dict, steps: int, folder: Path) -> list[float]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tuneforge.data.encode import ChatEncoder
    from tuneforge.data.templates import install_chat_template
    from tuneforge.train.rewards import load_user_function

    tokenizer = AutoTokenizer.from_pretrained(paths["model"])
    tokenizer.pad_token = tokenizer.eos_token
    install_chat_template(tokenizer, "alpaca")
    encoder = ChatEncoder(tokenizer)
    rows = [json.loads(line) for line in Path(paths["rows"]).read_text().splitlines()]
    prompts = [tokenizer.decode(encoder.prompt_ids([{"role": "user", "content": r["prompt"]}])) for r in rows]
    model = AutoModelForCausalLM.from_pretrained(paths["model"], dtype=torch.float32)
    reward = load_user_function(paths["reward"], "vowels", "bench")
    clock = type("Clock", (StepClock, TrainerCallback), {})()
    args = GRPOConfig(
        output_dir=str(folder / "trl_run"), per_device_train_batch_size=PROMPTS * GROUP, num_generations=GROUP,
        max_completion_length=NEW_TOKENS, max_steps=steps + 1, learning_rate=LR, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, temperature=1.0, beta=0.0,
        loss_type="dapo", mask_truncated_completions=False, disable_dropout=True, seed=0,
        generation_kwargs={"suppress_tokens": [tokenizer.eos_token_id]},  # as the model's own config says
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=lambda prompts, completions, **kw: reward(prompts, completions, []),
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"),
        callbacks=[clock],
    )
    trainer.train()
    return clock.ends


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", choices=["tuneforge", "trl"])
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child:
        folder = Path(args.folder)
        paths = json.loads((folder / "paths.json").read_text())
        run = tuneforge_run if args.child == "tuneforge" else trl_run
        print(json.dumps(run(paths, args.steps, folder)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = setup(folder)
        config = json.loads((Path(paths["model"]) / "generation_config.json").read_text())
        config["suppress_tokens"] = [config["eos_token_id"]]  # tuneforge's engine generates with it too
        (Path(paths["model"]) / "generation_config.json").write_text(json.dumps(config))
        (folder / "paths.json").write_text(json.dumps(paths))
        ends = {}
        for name in ("tuneforge", "trl"):
            command = [sys.executable, __file__, "--child", name, "--folder", tmp, "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            ends[name] = json.loads(done.stdout.strip().splitlines()[-1])
    report(ends, args.steps)


def report(ends: dict[str, list[float]], steps: int) -> None:
    from rich.console import Console
    from rich.table import Table

    tokens = PROMPTS * GROUP * NEW_TOKENS
    table = Table(title=f"GRPO step: {PROMPTS} prompts x {GROUP} completions x {NEW_TOKENS} tokens, CPU")
    for column in ("trainer", "s/step", "rollout tokens/s", "steps timed"):
        table.add_column(column)
    per_step = {}
    for name, times in ends.items():
        timed = times[2:]  # step 1 (its end is times[1]) warms up
        per_step[name] = (timed[-1] - times[1]) / len(timed)
        table.add_row(name, f"{per_step[name]:.2f}", f"{tokens / per_step[name]:,.0f}", str(len(timed)))
    Console().print(table)
    print(f"speedup_vs_trl={per_step['trl'] / per_step['tuneforge']:.2f}")


if __name__ == "__main__":
    main()
