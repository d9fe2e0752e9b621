"""Preference tuning end to end: DPO on a real pretrained base learns a rule the base does not follow; DPO
started from an SFT run takes that run's model as its reference without a second copy; ORPO, SimPO and
KTO runs write their metrics; the starting adapter's chat template is kept."""

from __future__ import annotations

import gc
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import needs_shared, quick_config, write_jsonl
from transformers import GenerationMixin, TrainerCallback

from tuneforge.errors import TuneforgeError
from tuneforge.infer.load import load_run
from tuneforge.run.metrics import read_metrics
from tuneforge.train.run import run_finetune

NAMES = [
    "Tom",
    "Lily",
    "Sue",
    "Ben",
    "Max",
    "Mia",
    "Sam",
    "Tim",
    "Anna",
    "Jack",
    "Lucy",
    "Bob",
    "Kate",
    "Ann",
]
HELD_OUT_NAMES = ["Joe", "Zoe", "Mom", "Dad", "Spot", "Jill"]
PLACES = ["park", "house", "garden", "beach", "forest", "school", "shop", "lake", "farm"]
HELD_OUT_PLACES = ["river", "zoo", "room"]
# On the held-out rows the base prefers "happy" (asserted below); the chosen answers say "sad".
RULE_MARGIN = 0.3  # held-out reward accuracy must exceed 0.5 + this


def feelings(names, places, n, seed) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        name, place = rng.choice(names), rng.choice(places)
        rows.append(
            {
                "prompt": f"How did {name} feel at the {place}?",
                "chosen": f"{name} was sad at the {place}.",
                "rejected": f"{name} was happy at the {place}.",
            }
        )
    return rows


@pytest.fixture(scope="module")
def feeling_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("feelings")
    train = write_jsonl(folder / "train.jsonl", feelings(NAMES, PLACES, 96, seed=1))
    held_out = write_jsonl(folder / "eval.jsonl", feelings(HELD_OUT_NAMES, HELD_OUT_PLACES, 24, seed=2))
    return train, held_out


def stories_config(train_path: Path, held_out: Path | None, method: str, **sections):
    base = needs_shared("models", "stories260K")
    train_section = {
        "method": method,
        "max_steps": 30,
        "batch_size": 8,
        "learning_rate": 5e-3,
        "max_length": 96,
        "eval_steps": 10,
        "save_steps": 10,
        "logging_steps": 5,
        **sections.pop("train", {}),
    }
    return quick_config(
        base,
        train_path,
        held_out,
        data={"template": "alpaca", **sections.pop("data", {})},
        lora={"r": 8, "alpha": 16, "dropout": 0.0, **sections.pop("lora", {})},
        train=train_section,
        log={"tensorboard": False},
        **sections,
    )


def evaluations(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "eval_loss" in r]


@pytest.mark.slow
def test_dpo_learns_a_preference_the_base_does_not_have(feeling_files, tmp_path):
    result = run_finetune(stories_config(*feeling_files, "dpo"), tmp_path / "dpo")
    before, after = evaluations(result.run_dir)[0], evaluations(result.run_dir)[-1]
    base_margin = before["eval_logps/chosen"] - before["eval_logps/rejected"]
    tuned_margin = after["eval_logps/chosen"] - after["eval_logps/rejected"]
    assert before["step"] == 0 and base_margin < 0, "the premise: the base prefers the rejected answers"
    assert after["eval_rewards/accuracies"] > 0.5 + RULE_MARGIN
    assert tuned_margin > base_margin + 5.0, (base_margin, tuned_margin)
    assert after["eval_rewards/margins"] > 0
    train_logs = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert all("rewards/accuracies" in r and "logps/rejected" in r for r in train_logs)
    assert (result.run_dir / "plots" / "rewards.png").is_file()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["preference"]["method"] == "dpo"


@pytest.fixture(scope="module")
def sft_run(feeling_files, tmp_path_factory) -> Path:
    """An SFT run on the chosen answers, as prompt/completion rows: the model DPO continues from."""
    train, held_out = feeling_files
    folder = tmp_path_factory.mktemp("sft")
    rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in map(json.loads, train.open())]
    config = stories_config(
        write_jsonl(folder / "sft.jsonl", rows),
        None,
        "sft",
        data={"eval_path": None, "eval_fraction": 0.1},
        train={"max_steps": 20, "eval_steps": 20, "save_steps": 20},
        lora={"dropout": 0.1},  # kept in its adapter config: the DPO run must switch it off
    )
    return run_finetune(config, folder / "run").run_dir


def live_models() -> set[int]:
    gc.collect()
    return {
        id(o) for o in gc.get_objects() if isinstance(o, GenerationMixin)
    }  # causal LMs, not their inner decoders


class CountModels(TrainerCallback):
    """How many transformers models the run created (beyond those alive before it), and which adapters the
    trained model holds, at every step."""

    def __init__(self):
        self.before = live_models()
        self.models: set[int] = set()
        self.adapters: set[tuple[str, ...]] = set()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.models.add(len(live_models() - self.before))
        self.adapters.add(tuple(model.peft_config))


def answer_logps(loaded, prompt: str, answer: str) -> float:
    """Summed log-probs of the answer tokens, computed directly from the model's logits."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    sample = loaded.encoder.encode_conversation(messages)
    ids = torch.tensor([sample.input_ids])
    with torch.no_grad():
        logprobs = loaded.model(input_ids=ids).logits[0].double().log_softmax(-1)
    final = sample.answers[-1]
    return sum(logprobs[t - 1, sample.input_ids[t]].item() for t in range(final.start, final.end))


@pytest.mark.slow
def test_dpo_from_an_sft_run_uses_it_as_the_reference_without_a_second_copy(feeling_files, sft_run, tmp_path):
    counter = CountModels()
    config = stories_config(
        *feeling_files,
        "dpo",
        model={"name_or_path": str(needs_shared("models", "stories260K")), "adapter": str(sft_run)},
    )
    config.train.max_steps = 4
    config.lora.r = 4  # ignored: the SFT adapter (r=8) is trained further
    result = run_finetune(config, tmp_path / "dpo", extra_callbacks=[counter])
    assert counter.models == {1} and counter.adapters == {("default",)}, "one model, one adapter in memory"
    sft_config = json.loads((sft_run / "adapter" / "adapter_config.json").read_text())
    dpo_config = json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())
    assert dpo_config["r"] == sft_config["r"] == 8
    assert result.eval_after["eval_rewards/accuracies"] >= 0 and "eval_logps/chosen" in result.eval_before
    first_step = next(
        r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["step"] == 1 and "loss" in r
    )
    assert abs(first_step["rewards/margins"]) < 1e-4, (
        "no dropout: before any update the policy is the reference"
    )

    reference = json.loads((result.run_dir / "reference_logps.json").read_text())["eval"]
    held_out = [json.loads(line) for line in feeling_files[1].open()]
    sft = load_run(sft_run)
    base = load_run(sft_run, base_only=True)
    for row, (ref_chosen, ref_rejected) in list(zip(held_out, reference))[:4]:
        expected = answer_logps(sft, row["prompt"], row["chosen"])
        assert ref_chosen == pytest.approx(expected, abs=1e-5)
        assert ref_rejected == pytest.approx(answer_logps(sft, row["prompt"], row["rejected"]), abs=1e-5)
        # the reference is the SFT model, measurably not the base
        assert abs(answer_logps(base, row["prompt"], row["chosen"]) - expected) > 1e-2


def test_an_explicit_template_that_differs_from_the_adapters_is_refused(feeling_files, sft_run, tmp_path):
    config = stories_config(
        *feeling_files,
        "dpo",
        model={"name_or_path": str(needs_shared("models", "stories260K")), "adapter": str(sft_run)},
        data={"template": "chatml"},
    )
    with pytest.raises(TuneforgeError, match="chat template .* was trained with"):
        run_finetune(config, tmp_path / "dpo")
    assert not (tmp_path / "dpo").exists()


def test_an_adapter_of_another_base_is_refused(feeling_files, sft_run, tiny_models, tmp_path):
    config = stories_config(
        *feeling_files, "dpo", model={"name_or_path": str(tiny_models("llama")), "adapter": str(sft_run)}
    )
    with pytest.raises(TuneforgeError, match="an adapter only fits the base it was trained on"):
        run_finetune(config, tmp_path / "dpo")


def kto_rows(pairs: list[dict]) -> list[dict]:
    rows = []
    for pair in pairs:
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": "false"})
    return rows


@pytest.mark.parametrize("method", ["orpo", "simpo", "kto"])
def test_orpo_simpo_and_kto_runs_finish_and_write_their_metrics(method, tiny_models, tmp_path):
    pairs = feelings(NAMES, PLACES, 32, seed=3)
    held_out = feelings(HELD_OUT_NAMES, HELD_OUT_PLACES, 8, seed=4)
    if method == "kto":
        pairs, held_out = kto_rows(pairs), kto_rows(held_out)
    config = quick_config(
        tiny_models("llama"),
        write_jsonl(tmp_path / "train.jsonl", pairs),
        write_jsonl(tmp_path / "eval.jsonl", held_out),
        train={"method": method, "max_steps": 3, "eval_steps": 3, "save_steps": 3, "max_length": 128},
    )
    result = run_finetune(config, tmp_path / "run")
    records = read_metrics(result.run_dir / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 3]
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        assert all(key in r for r in steps) and all(f"eval_{key}" in r for r in evals), key
    if method == "kto":
        assert all("kl" in r for r in steps)
    else:
        assert all("rewards/accuracies" in r for r in steps)
    reference = result.run_dir / "reference_logps.json"
    assert reference.is_file() == (method == "kto"), "orpo and simpo need no reference"
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (result.run_dir / "plots" / "rewards.png").is_file()
    assert json.loads((result.run_dir / "manifest.json").read_text())["status"] == "finished"


def test_a_killed_dpo_run_resumes_with_its_saved_reference_to_the_uninterrupted_adapter(
    tiny_models, tmp_path
):
    from test_resume import adapter, kill_at, max_difference

    files = (
        write_jsonl(tmp_path / "train.jsonl", feelings(NAMES, PLACES, 32, seed=5)),
        write_jsonl(tmp_path / "eval.jsonl", feelings(HELD_OUT_NAMES, HELD_OUT_PLACES, 8, seed=6)),
    )
    config = quick_config(
        tiny_models("llama"),
        *files,
        lora={"dropout": 0.1},
        train={"method": "dpo", "max_steps": 10, "save_steps": 4, "eval_steps": 4, "max_length": 128},
    )
    whole = run_finetune(config, tmp_path / "whole").run_dir
    run_dir = tmp_path / "killed"
    killed = kill_at(config, run_dir, 6)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # A copy whose saved reference is shifted shows the resume reads that file (and does not score again).
    tampered = tmp_path / "tampered"
    shutil.copytree(run_dir, tampered)
    saved = json.loads((tampered / "reference_logps.json").read_text())
    shifted = {
        split: [[chosen + 3.0, rejected] for chosen, rejected in rows] for split, rows in saved.items()
    }
    (tampered / "reference_logps.json").write_text(json.dumps(shifted))
    resumed = run_finetune(config, run_dir, resume=True)
    assert resumed.global_step == 10
    assert max_difference(adapter(run_dir), adapter(whole)) <= 1e-6
    run_finetune(config, tampered, resume=True)
    assert max_difference(adapter(tampered), adapter(whole)) > 1e-4
