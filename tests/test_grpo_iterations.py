"""grpo.iterations > 1: several optimizer passes over one batch of rollouts, as TRL's num_iterations.

Rollouts are sampled on the first step of each group of passes, with their log-probs kept as the "old"
policy's (the loss against TRL with old log-probs is in test_grpo_loss.py); the sampler gives the same
prompts for the other passes, so no data row is skipped; checkpoints (a graceful stop included) fall only
at the start of a group, so a SIGKILL and --resume ends at the uninterrupted adapter.
"""

from __future__ import annotations

import json
import signal
from types import SimpleNamespace

import pytest
from conftest import quick_config, write_jsonl
from safetensors.torch import load_file
from test_resume import adapter, kill_at, max_difference

from tuneforge.run.metrics import read_metrics
from tuneforge.train.grpo_rollout import RepeatedBatches
from tuneforge.train.guards import GracefulStop
from tuneforge.train.run import run_finetune

RECORDING = """
import json, os

def recorded(prompts, completions, rows):
    with open(os.environ["PROMPTS_SEEN"], "a") as file:
        file.write(json.dumps(prompts) + "\\n")
    return [min(len(c.split()), 3) / 3 for c in completions]
"""


def test_repeated_batches_give_each_global_batch_several_times_and_top_up_the_last():
    order = list(RepeatedBatches(range(10), batch=4, repeats=2))
    assert order == [0, 1, 2, 3] * 2 + [4, 5, 6, 7] * 2 + [8, 9, 0, 1] * 2
    assert len(RepeatedBatches(range(10), batch=4, repeats=2)) == len(order)


def test_a_graceful_stop_waits_for_the_start_of_the_next_group_of_passes():
    stop = GracefulStop(notice=lambda text: None, every=2)
    stop.requested = "SIGINT"
    for step, stops in ((3, False), (4, True)):
        control = SimpleNamespace(should_save=False, should_training_stop=False)
        stop.on_step_end(None, SimpleNamespace(global_step=step), control)
        assert control.should_save == control.should_training_stop == stops, step


def config_for(tiny_models, rows, **train):
    return quick_config(
        tiny_models("llama"),
        rows,
        train={
            "method": "grpo",
            "max_steps": 6,
            "save_steps": 2,
            "eval_steps": 6,
            "learning_rate": 1e-2,
            "batch_size": 8,
            **train,
        },  # fmt: skip
        grpo={
            "group_size": 4,
            "prompts_per_step": 2,
            "max_completion_tokens": 6,
            "iterations": 2,
            "mask_truncated": False,
            "rewards": [{"kind": "length", "max_words": 2}],
        },  # fmt: skip
    )


@pytest.fixture
def rows(tmp_path):
    prompts = [{"prompt": f"count the lines in f{i}.txt", "completion": f"wc -l f{i}.txt"} for i in range(14)]
    return write_jsonl(tmp_path / "rows.jsonl", prompts)


def test_rollouts_are_sampled_once_per_group_of_passes_and_every_prompt_is_used(
    tiny_models, rows, tmp_path, monkeypatch
):
    (tmp_path / "recording.py").write_text(RECORDING)
    monkeypatch.setenv("PROMPTS_SEEN", str(tmp_path / "seen.jsonl"))
    config = config_for(tiny_models, rows, max_steps=14, save_steps=14, eval_steps=14)  # one epoch: 14 rows
    config.grpo.rewards[0] = config.grpo.rewards[0].model_validate(
        {"kind": "python", "file": str(tmp_path / "recording.py"), "function": "recorded"}
    )
    config.data.eval_path = str(write_jsonl(tmp_path / "held.jsonl", [{"prompt": "x", "completion": "y"}]))
    result = run_finetune(config, tmp_path / "run")
    steps = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in steps if "reward" in r] == list(range(1, 15, 2)), "sampled on each first pass"
    assert all(r["clip_ratio/low"] == 0 and r["clip_ratio/high"] == 0 for r in steps if "reward" in r), (
        "the first pass is the sampling policy: ratio 1, nothing clipped"
    )
    # equal-length completions and advantages summing to 0: the first pass's loss is 0; a later pass's is
    # not, since its ratio to the old (sampling) log-probs has moved from 1
    assert max(abs(r["loss"]) for r in steps if "reward" in r) < 1e-5
    assert max(abs(r["loss"]) for r in steps if "reward" not in r) > 1e-3
    training = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    training = [p for p in training if len(p) == 8]  # evaluations answer one held-out prompt
    distinct = [sorted(set(p)) for p in training]
    assert len(training) == 7 and all(len(p) == 2 for p in distinct)
    assert len({prompt for p in distinct for prompt in p}) == 14, "an epoch's 14 prompts, none skipped"


def test_sigkill_inside_a_group_of_passes_then_resume_gives_the_uninterrupted_adapter(
    tiny_models, rows, tmp_path
):
    config = config_for(tiny_models, rows)
    uninterrupted = run_finetune(config, tmp_path / "reference")
    assert uninterrupted.global_step == 6
    killed = kill_at(config, tmp_path / "run", 5)  # after checkpoint-4, inside the third group of passes
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_finetune(config, tmp_path / "run", resume=True)
    at_checkpoint = load_file(tmp_path / "run" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert max_difference(adapter(tmp_path / "run"), at_checkpoint) > 1e-4, "the steps after it trained"
    assert max_difference(adapter(tmp_path / "run"), adapter(tmp_path / "reference")) <= 1e-6


def test_a_checkpoint_inside_a_group_of_passes_is_refused(tiny_models, rows, tmp_path):
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="train.save_steps .3. must be a multiple of grpo.iterations"):
        run_finetune(config_for(tiny_models, rows, save_steps=3), tmp_path / "run")
