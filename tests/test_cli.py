"""The CLI surface: --version, generate's input checks, `tuneforge data --json`; and the dev-only tiny-model
builder that `make demo` runs."""

import pytest
from transformers import AutoConfig, AutoTokenizer
from typer.testing import CliRunner

from tuneforge import __version__
from tuneforge.cli import app
from tuneforge.errors import TuneforgeError
from tuneforge_dev.tiny_model import main as tiny_model_main

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"tuneforge {__version__}"


def test_tiny_model_is_a_base_model_without_pad_token(tmp_path):
    tiny_model_main([str(tmp_path / "m"), "--arch", "mistral", "--hidden", "32", "--layers", "1"])
    config = AutoConfig.from_pretrained(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert config.model_type == "mistral" and config.hidden_size == 32 and config.num_hidden_layers == 1
    assert tokenizer.pad_token is None and tokenizer.chat_template is None
    assert tokenizer.decode(tokenizer("any text, even ünïcödé").input_ids, skip_special_tokens=True) == (
        "any text, even ünïcödé"
    )


def test_tiny_model_rejects_unknown_arch(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tiny_model_main([str(tmp_path / "m"), "--arch", "bert"])
    assert "invalid choice: 'bert'" in capsys.readouterr().err
    from tuneforge_dev.tiny_model import build_tiny_model

    with pytest.raises(TuneforgeError, match="choose one of llama, mistral, qwen2, phi, gpt2"):
        build_tiny_model(tmp_path / "m", "bert")


def test_generate_needs_a_prompt(tmp_path):
    result = runner.invoke(app, ["generate", str(tmp_path)])
    assert result.exit_code == 2 and "--prompt" in result.output


def test_generate_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["generate", str(tmp_path), "--prompt", "hi"])
    assert result.exit_code == 2 and "not a finished tuneforge run" in result.output


def test_data_command_reports_as_json(tmp_path, tiny_models, demo_files):
    import json

    from conftest import quick_config

    from tuneforge.config.loading import config_to_yaml

    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(quick_config(tiny_models("llama"), *demo_files)))
    result = runner.invoke(app, ["data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stderr (datasets progress) is not part of the JSON
    assert report["rows"] == {"train": 160, "eval": 24, "read": 160, "eval_read": 24}
    assert {c["check"] for c in report["preflight"]} >= {"eos", "prompt_match", "answer_tokens", "truncation"}
    assert report["max_length"] == {"requested": 64, "applied": 64, "capped_at_context": False}
    assert all(c["passed"] for c in report["preflight"])
    assert report["lora_targets"]["q_proj"] == 2 and sum(b["samples"] for b in report["histogram"]) == 160
    shown = runner.invoke(app, ["data", str(path), "--n", "2"])
    assert shown.exit_code == 0 and shown.output.count("sample (green = trained)") == 2
