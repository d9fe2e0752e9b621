"""The NaN/inf guard, a truthful manifest after failures, safe overwrite, and no secrets in a run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import quick_config, write_jsonl
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import config_to_yaml
from tuneforge.train.guards import NonFiniteError
from tuneforge.train.run import run_finetune

runner = CliRunner()


def every_saved_tensor(run_dir: Path) -> list[torch.Tensor]:
    return [t for path in run_dir.rglob("*.safetensors") for t in load_file(path).values()]


@pytest.fixture(scope="module")
def quickstart_sized_llama(tmp_path_factory) -> Path:
    """The quickstart's model size: large enough for a huge learning rate to overflow attention into NaN
    (the smaller test model only saturates)."""
    from tuneforge_dev.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("llama-128"), "llama")


def test_a_learning_rate_that_blows_up_stops_the_run_nonzero_with_nothing_non_finite_saved(
    quickstart_sized_llama, demo_files, tmp_path
):
    config = quick_config(
        quickstart_sized_llama, *demo_files, train={"learning_rate": 1e3, "max_steps": 30, "save_steps": 1}
    )
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config))
    result = runner.invoke(app, ["train", str(path), "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "is NaN or infinite" in result.output and "lower train.learning_rate (now 1000)" in result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "NaN or infinite" in manifest["error"]
    saved = every_saved_tensor(tmp_path / "run")
    assert saved and all(torch.isfinite(t).all() for t in saved), "checkpoints before the failure are finite"
    assert not (tmp_path / "run" / "adapter").exists()
    assert "the last good checkpoint is" in result.output


class InfiniteGradientAt(TrainerCallback):
    """Makes one LoRA gradient infinite from a given step on: a planted fault the loss does not show."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            param = next(p for n, p in model.named_parameters() if "lora_A" in n)
            param.register_hook(lambda grad: grad * float("inf"))


def test_an_infinite_gradient_stops_the_run_before_the_optimizer_applies_it(
    tiny_models, demo_files, tmp_path
):
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 6, "max_grad_norm": 1.0})
    with pytest.raises(
        NonFiniteError, match="training stopped at step 3: the gradient norm is NaN or infinite"
    ):
        run_finetune(config, tmp_path / "run", extra_callbacks=[InfiniteGradientAt(3)])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "step 3" in manifest["error"]
    assert all(torch.isfinite(t).all() for t in every_saved_tensor(tmp_path / "run"))


class InfiniteWeightAt(TrainerCallback):
    """A weight overflows while every gradient stays finite: the checkpoint about to be sealed has it."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_B" in n)[0, 0] = float("inf")


def test_a_checkpoint_with_a_non_finite_weight_is_never_sealed(tiny_models, demo_files, tmp_path):
    # No evaluation: it would see the infinite weight first (and stop the run just the same).
    config = quick_config(
        tiny_models("llama"),
        demo_files[0],
        data={"eval_fraction": 0},
        train={"max_steps": 6, "save_steps": 2},
    )
    with pytest.raises(NonFiniteError, match="step 4: a trained weight is NaN or infinite"):
        run_finetune(config, tmp_path / "run", extra_callbacks=[InfiniteWeightAt(4)])
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["checkpoint-2"]
    assert all(torch.isfinite(t).all() for t in every_saved_tensor(tmp_path / "run"))


def test_the_guard_lets_fp16_loss_scaling_overflow_pass_but_not_a_nan_loss():
    from types import SimpleNamespace

    from tuneforge.train.guards import NonFiniteGuard

    guard = NonFiniteGuard(2e-4)
    state = SimpleNamespace(global_step=3)
    guard.on_log(SimpleNamespace(fp16=True), state, None, logs={"loss": 1.2, "grad_norm": float("inf")})
    with pytest.raises(NonFiniteError, match="the grad norm is NaN"):
        guard.on_log(SimpleNamespace(fp16=False), state, None, logs={"loss": 1.2, "grad_norm": float("inf")})
    with pytest.raises(NonFiniteError, match="the loss is NaN"):
        guard.on_log(SimpleNamespace(fp16=True), state, None, logs={"loss": float("nan")})


def test_a_run_that_fails_its_checks_leaves_no_folder_behind(tiny_models, tmp_path):
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{"prompt": "x", "completion": ""}] * 3 + [{"prompt": "y", "completion": "z"}]
    )
    config = quick_config(tiny_models("llama"), bad, data={"eval_fraction": 0})
    with pytest.raises(Exception, match="preflight failed"):
        run_finetune(config, tmp_path / "new-run")
    assert not (tmp_path / "new-run").exists()


def test_overwrite_replaces_a_finished_run_only_after_the_new_one_passed_its_checks(
    tiny_models, demo_files, tmp_path
):
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 4, "save_steps": 2})
    run_finetune(config, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    shorter = config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 1})})
    run_finetune(shorter, tmp_path / "run", overwrite=True)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["checkpoint-1"], (
        "old files gone"
    )
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["global_step"] == 1


def test_no_secret_reaches_the_run_directory(tiny_models, demo_files, tmp_path, monkeypatch):
    secrets = {
        "HF_TOKEN": "hf_SecretTokenValue123",
        "WANDB_API_KEY": "wandb-secret-key-456",
        "MY_SERVICE_KEY": "service-key-789",
        "OPENAI_API_KEY": "sk-not-a-real-key-000",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    # A key pasted on the command line is redacted from the recorded command too.
    monkeypatch.setattr(sys, "argv", ["tuneforge", "train", "c.yaml", "--set", f"x={secrets['HF_TOKEN']}"])
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 2})
    run_finetune(config, tmp_path / "run")
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(value.encode() in content for value in secrets.values()), path
    command = json.loads((tmp_path / "run" / "manifest.json").read_text())["command"]
    assert command[-1] == "x=<redacted>"


def test_remote_code_saved_in_a_run_needs_the_users_own_flag(tiny_models, demo_files, tmp_path):
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 1})
    run_finetune(config, tmp_path / "run")
    saved = tmp_path / "run" / "config.yaml"
    saved.write_text(saved.read_text().replace("trust_remote_code: false", "trust_remote_code: true"))
    refused = runner.invoke(app, ["generate", str(tmp_path / "run"), "--prompt", "hi"])
    assert refused.exit_code == 2 and "pass --trust-remote-code" in refused.output
    allowed = runner.invoke(
        app,
        ["generate", str(tmp_path / "run"), "--prompt", "hi", "--trust-remote-code", "--max-new-tokens", "2"],
    )
    assert allowed.exit_code == 0, allowed.output


def test_overwrite_keeps_the_users_own_files(tiny_models, demo_files, tmp_path):
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 1})
    run_finetune(config, tmp_path / "run")
    (tmp_path / "run" / "NOTES.md").write_text("what I tried")
    run_finetune(config, tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "NOTES.md").read_text() == "what I tried"
