"""Config validation: strict keys with suggestions, --set overrides, and every shipped example loads."""

from pathlib import Path

import pytest

from tuneforge.config.loading import apply_override, load_config, validate_config
from tuneforge.errors import TuneforgeError

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
BASE = {"model": {"name_or_path": "m"}, "data": {"path": "d.jsonl"}}


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(TuneforgeError) as err:
        validate_config({**BASE, "train": {"learnig_rate": 1e-4}}, source="my.yaml")
    message = str(err.value)
    assert "my.yaml" in message
    assert "unknown key 'train.learnig_rate'" in message
    assert "did you mean 'learning_rate'" in message


def test_unknown_section_is_reported():
    with pytest.raises(TuneforgeError, match="did you mean 'lora'"):
        validate_config({**BASE, "lorra": {"r": 8}})


def test_bad_choice_names_the_field():
    with pytest.raises(TuneforgeError, match="quant.mode"):
        validate_config({**BASE, "quant": {"mode": "3bit"}})


def test_quantized_full_finetune_is_refused():
    with pytest.raises(TuneforgeError, match="needs lora.method=lora"):
        validate_config({**BASE, "quant": {"mode": "4bit"}, "lora": {"method": "full"}})


def test_set_overrides_parse_yaml_values():
    raw = {"model": {"name_or_path": "m"}}
    apply_override(raw, "train.max_steps=20")
    apply_override(raw, "lora.target_modules=[q_proj, v_proj]")
    apply_override(raw, "data.eval_path=null")
    apply_override(raw, "data.path=file=with=equals.jsonl")
    assert raw["train"]["max_steps"] == 20
    assert raw["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert raw["data"]["eval_path"] is None
    assert raw["data"]["path"] == "file=with=equals.jsonl"
    with pytest.raises(TuneforgeError, match="section.key=value"):
        apply_override(raw, "nonsense")


def test_missing_config_file(tmp_path):
    with pytest.raises(TuneforgeError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path):
    config = load_config(path)
    assert config.model.name_or_path
    # sft and grpo examples state their row shape; preference rows are read by their columns (format refused)
    stated = config.train.method in ("sft", "grpo")
    assert (config.data.format != "auto") == stated, "examples state their data shape"


def test_the_config_reference_page_is_current():
    from tuneforge.config.reference import render, section_in

    readme = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md").read_text()
    assert section_in(readme) == render(), (
        "refresh it: python -m tuneforge.config.reference --write docs/reference/config.md"
    )


def test_a_key_written_twice_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(
        "model:\n  name_or_path: m\ndata:\n  path: d.jsonl\ntrain:\n  max_steps: 5\ntrain:\n  max_steps: 9\n"
    )
    with pytest.raises(
        TuneforgeError, match=r"twice.yaml, line 7: key 'train' is written twice \(first on line 5\)"
    ):
        load_config(path)
    path.write_text("model:\n  name_or_path: m\ndata:\n  path: d.jsonl\n  path: e.jsonl\n")
    with pytest.raises(TuneforgeError, match=r"key 'path' is written twice \(first on line 4\)"):
        load_config(path)


def test_yaml_merge_keys_still_work(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        "model: {name_or_path: m}\ndata: {path: d.jsonl}\nlora:\n  <<: {r: 8, alpha: 16}\n  dropout: 0.0\n"
    )
    assert (load_config(path).lora.r, load_config(path).lora.alpha) == (8, 16)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_numbers_must_be_finite(value):
    raw = {"model": {"name_or_path": "m"}, "data": {"path": "d"}, "train": {"epochs": float(value)}}
    with pytest.raises(TuneforgeError, match=r"train.epochs: .*finite"):
        validate_config(raw)
