"""GRPO learns on CPU, and only from the reward's signal.

A tiny model is SFT'd briefly on answers from a teacher that is right a quarter of the time: asked the
colour of something, it says "green" three times in four and "blue" (right) once. Greedy decoding then
says "green" on every held-out prompt (exact match 0%), but sampled answers are right about a quarter of
the time, so groups of 8 carry signal. GRPO with the exact-match reward must lift held-out exact match by
at least 50 points (it reaches 100% in 20 steps here); with the same scores shuffled across completions
(the planted fault: rewards misaligned with what they score) it must stay within 10 points of the start.
"""

from __future__ import annotations

import random

import pytest
from conftest import quick_config, write_jsonl

from tuneforge.run.metrics import read_metrics
from tuneforge.train.run import run_finetune

THINGS = ["sky", "sea", "leaf", "grass", "lake", "frog", "jay", "pine", "ice", "moss", "river", "kiwi"]
SHUFFLED = """
import random

def shuffled(prompts, completions, rows):
    scores = [float(c.strip() == row["reference"]) for c, row in zip(completions, rows)]
    random.Random(len(scores) + sum(scores)).shuffle(scores)
    return scores
"""


def prompt(i: int) -> str:
    return f"what colour is the {THINGS[i % len(THINGS)]} number {i}"


@pytest.fixture(scope="module")
def briefly_sft(tiny_models, tmp_path_factory):
    """(model, SFT run, GRPO prompts, held-out prompts): the SFT run answers 'green' where 'blue' is right."""
    folder = tmp_path_factory.mktemp("grpo_learning")
    teacher = random.Random(0)
    sft = [
        {"prompt": prompt(i), "completion": "green" if teacher.random() < 0.75 else "blue"} for i in range(96)
    ]
    write_jsonl(folder / "sft.jsonl", sft)
    write_jsonl(folder / "train.jsonl", [{"prompt": prompt(i), "completion": "blue"} for i in range(96)])
    write_jsonl(
        folder / "held.jsonl", [{"prompt": prompt(i), "completion": "blue"} for i in range(1000, 1032)]
    )
    config = quick_config(
        tiny_models("llama"),
        folder / "sft.jsonl",
        folder / "held.jsonl",
        # a random base: its embeddings carry nothing, so they train in full (as in the quickstart)
        lora={"r": 8, "alpha": 16, "dropout": 0.0, "modules_to_save": ["embed_tokens", "lm_head"]},
        train={"max_steps": 80, "batch_size": 8, "learning_rate": 3e-3, "warmup": 0.0, "eval_steps": 80},
        eval={"max_new_tokens": 4},
    )
    config.train.save_steps = 80
    run_finetune(config, folder / "sft")
    return tiny_models("llama"), folder


def continued(briefly_sft, train: dict, grpo: dict):
    """A GRPO config that continues the brief SFT run on its prompts, held-out set beside."""
    model, folder = briefly_sft
    return quick_config(
        model,
        folder / "train.jsonl",
        folder / "held.jsonl",
        model={"name_or_path": str(model), "adapter": str(folder / "sft")},
        train={"method": "grpo", "learning_rate": 3e-3, **train},
        grpo={"max_completion_tokens": 4, "mask_truncated": False, **grpo},
    )


def grpo_run(briefly_sft, tmp_path, reward: dict):
    # mask_truncated off: a cut answer scores 0 and is pushed down; masked, it would be a free way out of
    # a low reward
    config = continued(
        briefly_sft,
        train={"max_steps": 20, "batch_size": 32, "warmup": 0.0, "eval_steps": 20, "save_steps": 20},
        grpo={"group_size": 8, "prompts_per_step": 4, "rewards": [reward]},
    )
    config.eval.batch_size = 8
    result = run_finetune(config, tmp_path / "grpo")
    name = f"eval_rewards/{reward.get('function', reward['kind'])}"
    return 100 * result.eval_before[name], 100 * result.eval_after[name]


def test_grpo_lifts_held_out_exact_match_after_a_brief_sft(briefly_sft, tmp_path):
    before, after = grpo_run(briefly_sft, tmp_path, {"kind": "exact_match", "column": "reference"})
    assert before <= 25, f"the SFT model should mostly answer 'green' ({before:.0f}% exact match)"
    assert after - before >= 50, f"held-out exact match {before:.0f}% -> {after:.0f}%"


def test_shuffled_rewards_teach_nothing(briefly_sft, tmp_path):
    (tmp_path / "shuffled.py").write_text(SHUFFLED)
    reward = {"kind": "python", "file": str(tmp_path / "shuffled.py"), "function": "shuffled"}
    before, after = grpo_run(briefly_sft, tmp_path, reward)
    assert abs(after - before) < 10, f"held-out exact match {before:.0f}% -> {after:.0f}% from noise"


def test_continuing_an_sft_run_the_kl_reference_is_that_run(briefly_sft, tmp_path):
    """At the first step the policy is the SFT adapter, so its KL to the reference is 0; against the base
    (the adapter switched off, the planted fault) it is far from 0. Later steps move away from it."""
    config = continued(
        briefly_sft,
        train={"max_steps": 3, "batch_size": 16, "eval_steps": 3},
        grpo={
            "group_size": 4,
            "prompts_per_step": 4,
            "beta": 0.04,
            "rewards": [{"kind": "exact_match", "column": "reference"}],
        },  # fmt: skip
    )
    config.train.save_steps = 3
    result = run_finetune(config, tmp_path / "grpo")
    kl = [r["kl"] for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert len(kl) == 3 and kl[0] < 1e-6, kl
    assert kl[-1] > 1e-4, "the policy moves away from the reference"
