"""GRPO's plumbing: rollout prompts are `generate`'s prompts, completion log-probs in a padded batch equal
one-at-a-time scoring, the KL reference is the starting model (adapter off) in the same copy, truncated
completions are masked, and a small run goes through the CLI with its reward metrics. The loss is tested
against TRL in test_grpo_loss.py, the rewards in test_rewards.py."""

from __future__ import annotations

import json
import math
import signal
from types import SimpleNamespace

import pytest
import torch
from conftest import quick_config, write_jsonl
from safetensors.torch import load_file
from test_preference import CountModels
from test_resume import adapter, kill_at, max_difference
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import config_to_yaml, validate_config
from tuneforge.config.schema import DataConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.prepare import prepare_data
from tuneforge.data.prompts import PROMPTS
from tuneforge.infer.inputs import prompts_from_file
from tuneforge.model.build import build_model
from tuneforge.model.load import load_tokenizer
from tuneforge.run.metrics import read_metrics
from tuneforge.train.grpo_rollout import (
    completion_batch,
    completion_logps,
    completion_mask,
    shared_prompt_logps,
    truncated,
)
from tuneforge.train.grpo_trainer import GrpoTrainer
from tuneforge.train.preference import disable_dropout
from tuneforge.train.run import run_finetune

REWARD = {"rewards": [{"kind": "exact_match", "column": "reference"}]}


def grpo_config(tiny_models, demo_files, **grpo):
    return quick_config(
        tiny_models("llama"),
        *demo_files,
        train={"method": "grpo", "max_steps": 2, "eval_steps": 2, "save_steps": 2, "logging_steps": 1},
        grpo={"group_size": 4, "prompts_per_step": 2, "max_completion_tokens": 8, **REWARD, **grpo},
    )


def test_rollout_prompts_are_the_prompts_generate_builds(tiny_models, demo_files):
    config = grpo_config(tiny_models, demo_files)
    tokenizer = load_tokenizer(config.model)
    data = prepare_data(config.data, tokenizer, None, 512, track=PROMPTS)
    encoder = ChatEncoder(tokenizer)
    view = DataConfig(**{**config.data.model_dump(), "eval_path": None})
    rows = prompts_from_file(demo_files[1], view, data.format)
    generated = [encoder.prompt_ids(row.messages) for row in rows]
    assert data.eval["prompt_ids"] == generated[: len(data.eval)]
    assert [json.loads(r)["reference"] for r in data.eval["row"]] == [r.reference for r in rows][
        : len(data.eval)
    ]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # rotary and learned absolute positions
def test_padded_completion_logps_equal_one_at_a_time(tiny_models, arch):
    config = quick_config(tiny_models(arch), "unused.jsonl")
    model = build_model(config.model, config.quant, config.lora, False).model.eval()
    prompts, completions = [[1, 5, 9], [1, 7], [1, 3, 4, 8, 2]], [[11, 12, 2], [13], [14, 15, 16, 17]]
    with torch.no_grad():
        together = completion_logps(model, completion_batch(prompts, completions, 0), temperature=0.7)
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            ids = torch.tensor([prompt + completion])
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float() / 0.7
            alone = logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)
            torch.testing.assert_close(together[row, : len(completion)], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_each_prompt_run_once_gives_the_padded_batchs_logps_and_gradients(tiny_models, arch):
    """The optimisation (shared_prompt_logps: a group's prompt runs once, its cache repeated) against the
    reference path (every completion with its own copy of the prompt): log-probs and LoRA gradients."""
    config = quick_config(tiny_models(arch), "unused.jsonl")
    model = build_model(config.model, config.quant, config.lora, False).model.train()
    disable_dropout(model)
    for name, weight in model.named_parameters():
        if "lora_B" in name:  # a trained adapter, so the gradient reaches lora_A too
            weight.data.normal_(0, 0.1)
    prompts = [[1, 5, 9]] * 3 + [[1, 7]] * 3
    completions = [[11, 12, 2], [13], [14, 15, 16, 17], [20, 21], [22, 23, 24, 25, 26], [27]]
    mask, weights = completion_mask(completions).float(), torch.randn(6, 5)
    found = {}
    for path in ("padded", "shared"):
        model.zero_grad()
        if path == "padded":
            logps = completion_logps(model, completion_batch(prompts, completions, 0), temperature=0.7)
        else:
            logps = shared_prompt_logps(model, prompts, completions, 3, 0, temperature=0.7)
        (logps * mask * weights).sum().backward()
        grads = {n: w.grad.clone() for n, w in model.named_parameters() if w.grad is not None}
        found[path] = logps.detach() * mask, grads
    torch.testing.assert_close(found["shared"][0], found["padded"][0], atol=1e-5, rtol=0)
    assert found["shared"][1].keys() == found["padded"][1].keys() and len(found["padded"][1]) > 4
    for name, grad in found["padded"][1].items():
        torch.testing.assert_close(found["shared"][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_truncation_is_a_cut_without_eos():
    assert truncated([4, 5, 6], eos_id=2, max_new_tokens=3)
    assert not truncated([4, 5, 2], eos_id=2, max_new_tokens=3)
    assert not truncated([4, 2], eos_id=2, max_new_tokens=3)


def test_a_grpo_run_logs_rewards_and_keeps_one_model_whose_reference_is_the_start(
    tiny_models, demo_files, tmp_path
):
    counter = CountModels()
    config = grpo_config(tiny_models, demo_files, beta=0.04, temperature=1.5)
    config.train.learning_rate = 5e-2  # large enough that two steps move the adapter
    result = run_finetune(config, tmp_path / "run", extra_callbacks=[counter])
    assert counter.models == {1} and counter.adapters == {("default",)}, "one model, one adapter"
    steps = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    for key in ("reward", "rewards/exact_match", "frac_reward_zero_std", "completions/mean_length", "kl"):
        assert key in steps[-1], key
    assert "eval_reward" in result.eval_before and "eval_reward" in result.eval_after
    assert json.loads((result.run_dir / "manifest.json").read_text())["grpo"]["rewards"] == ["exact_match"]


def test_the_cli_trains_grpo_and_shows_its_data(tiny_models, demo_files, tmp_path):
    path = tmp_path / "grpo.yaml"
    path.write_text(config_to_yaml(grpo_config(tiny_models, demo_files)))
    shown = CliRunner().invoke(app, ["data", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "reward_reachable" in shown.output and "exact_match 1" in shown.output
    broken = CliRunner().invoke(
        app, ["data", str(path), "--set", "grpo.rewards=[{kind: exact_match, column: nope}]"]
    )
    assert broken.exit_code == 2 and "'nope'" in broken.output, broken.output


@pytest.mark.parametrize(
    "settings",
    [
        ["grpo.iterations=3"],
        ["train.grad_accumulation=2"],
        ["grpo.beta=0.1", "lora.method=full"],
        ["train.epochs=1.5", "train.max_steps=null", "grpo.iterations=2", "train.save_steps=2"],
        ["distributed.strategy=deepspeed"],
    ],
)
def test_what_grpo_cannot_do_yet_is_refused(tiny_models, demo_files, tmp_path, settings):
    path = tmp_path / "grpo.yaml"
    path.write_text(config_to_yaml(grpo_config(tiny_models, demo_files)))
    result = CliRunner().invoke(app, ["train", str(path), *[a for s in settings for a in ("--set", s)]])
    assert result.exit_code == 2 and settings[0].split("=")[0] in result.output, result.output


def test_the_kl_reference_is_the_starting_model_in_the_same_copy(tiny_models):
    config = quick_config(tiny_models("llama"), "unused.jsonl")
    model = build_model(config.model, config.quant, config.lora, False).model.eval()
    batch = completion_batch([[1, 5, 9], [1, 7]], [[11, 12, 2], [13, 14]], 0)
    with torch.no_grad():
        start = completion_logps(model, batch, temperature=1.0)
        for name, weight in model.named_parameters():
            if "lora_B" in name:  # a trained adapter: it now changes the answers
                weight.add_(torch.randn_like(weight) * 0.5)
        trained = completion_logps(model, batch, temperature=1.0)
        trainer = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m: m), start=None)
        with GrpoTrainer.reference_model(trainer, model):
            reference = completion_logps(model, batch, temperature=1.0)
    assert (trained - start).abs().max() > 1e-2
    torch.testing.assert_close(reference, start, atol=1e-5, rtol=0)


def test_sigkill_then_resume_gives_the_uninterrupted_adapter(tiny_models, tmp_path):
    """Rollouts are sampled with a seed drawn from the run's seed and the step: a resumed run samples what
    the uninterrupted one sampled, so it ends at the same adapter."""
    rows = write_jsonl(
        tmp_path / "rows.jsonl",
        [{"prompt": f"count the lines in f{i}.txt", "completion": f"wc -l f{i}.txt"} for i in range(24)],
    )
    config = quick_config(
        tiny_models("llama"),
        rows,
        train={"method": "grpo", "max_steps": 8, "save_steps": 4, "eval_steps": 8, "learning_rate": 1e-2},
        grpo={
            "group_size": 4,
            "prompts_per_step": 2,
            "max_completion_tokens": 6,
            "rewards": [{"kind": "length", "max_words": 2}],
            "mask_truncated": False,  # a random model never ends its answers
        },
    )
    uninterrupted = run_finetune(config, tmp_path / "reference")
    assert uninterrupted.global_step == 8
    killed = kill_at(config, tmp_path / "run", 6)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_finetune(config, tmp_path / "run", resume=True)
    at_checkpoint = load_file(tmp_path / "run" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert max_difference(adapter(tmp_path / "run"), at_checkpoint) > 1e-4, "the steps after it trained"
    assert max_difference(adapter(tmp_path / "run"), adapter(tmp_path / "reference")) <= 1e-6


@pytest.mark.parametrize(
    "sections", [{"lora": {"method": "full"}}, {"quant": {"mode": "4bit"}}], ids=["full", "qlora"]
)
def test_full_fine_tuning_and_qlora_train_with_grpo(tiny_models, demo_files, tmp_path, sections):
    config = grpo_config(tiny_models, demo_files).model_dump()
    for section, values in sections.items():
        config[section].update(values)
    config["train"]["learning_rate"] = 1e-2
    result = run_finetune(validate_config(config), tmp_path / "run")
    steps = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(math.isfinite(r["loss"]) for r in steps)
    assert json.loads((result.run_dir / "manifest.json").read_text())["status"] == "finished"
