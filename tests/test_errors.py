"""Bad input gets a clear error from the CLI (exit 2, no traceback) that says what to change."""

import json

import pytest
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.schema import LoraConfig, ModelConfig, QuantConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.build import build_model

runner = CliRunner()


def write_config(tmp_path, model_dir, data_path, extra: str = "") -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"model:\n  name_or_path: {model_dir}\ndata:\n  path: {data_path}\n{extra}")
    return str(path)


def train(config: str, tmp_path, *sets: str):
    args = ["train", config, "--output-dir", str(tmp_path / "run")]
    for item in sets:
        args += ["--set", item]
    return runner.invoke(app, args)


def test_unknown_key(tmp_path, tiny_models, demo_files):
    result = train(write_config(tmp_path, tiny_models(), demo_files[0], "train:\n  epoch: 2\n"), tmp_path)
    assert result.exit_code == 2
    assert "unknown key 'train.epoch'" in result.output and "did you mean 'epochs'" in result.output
    assert "Traceback" not in result.output


def test_missing_data_file(tmp_path, tiny_models):
    result = train(write_config(tmp_path, tiny_models(), tmp_path / "nowhere.csv"), tmp_path)
    assert result.exit_code == 2
    assert "data file not found" in result.output and "nowhere.csv" in result.output


def test_missing_column_lists_existing_columns(tmp_path, tiny_models):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": "q", "reply": "r"}) + "\n" for _ in range(4)))
    result = train(write_config(tmp_path, tiny_models(), data), tmp_path, "data.format=prompt_completion")
    assert result.exit_code == 2
    assert "column 'prompt' not found" in result.output and "question, reply" in result.output


def test_lora_target_matching_nothing_lists_linear_layers(tmp_path, tiny_models, demo_files):
    result = train(
        write_config(tmp_path, tiny_models(), demo_files[0]), tmp_path, "lora.target_modules=[qkv_proj]"
    )
    assert result.exit_code == 2
    assert "'qkv_proj' matches no linear layer" in result.output
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"):
        assert name in result.output


def test_all_linear_covers_gpt2_conv1d_layers(tiny_models):
    bundle = build_model(
        ModelConfig(name_or_path=str(tiny_models("gpt2"))), QuantConfig(), LoraConfig(), False
    )
    assert set(bundle.adapted_modules) == {"c_attn", "c_proj", "c_fc"}


def test_missing_model_folder():
    with pytest.raises(TuneforgeError, match="model folder not found"):
        build_model(ModelConfig(name_or_path="./no/such/model"), QuantConfig(), LoraConfig(), False)


def test_modules_to_save_must_exist(tiny_models):
    lora = LoraConfig(modules_to_save=["embed_tokens"])  # a Llama name; GPT-2 calls it wte
    with pytest.raises(TuneforgeError, match="'embed_tokens' is not a module of this model.*wte"):
        build_model(ModelConfig(name_or_path=str(tiny_models("gpt2"))), QuantConfig(), lora, False)
