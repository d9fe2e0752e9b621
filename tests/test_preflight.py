"""One planted fault per preflight check, each caught with its message; a clean dataset passes; overrides work."""

import pytest
from conftest import write_jsonl

from tuneforge.config import DataConfig, ModelConfig, PreflightConfig
from tuneforge.data import prepare_data
from tuneforge.errors import TuneforgeError
from tuneforge.modeling import load_tokenizer
from tuneforge.preflight import enforce
from tuneforge.templates import BUILTIN_TEMPLATES

ROWS = [{"prompt": f"count lines in file{i}.txt", "completion": f"wc -l file{i}.txt"} for i in range(20)]


@pytest.fixture
def tokenizer(tiny_models):
    return load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))


def failed(data) -> dict[str, str]:
    return {r.name: r.message for r in data.preflight if not r.passed}


def prepare(tmp_path, tokenizer, rows=ROWS, max_length=64, eval_fraction=0.0, **data):
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    return prepare_data(
        DataConfig(path=str(path), eval_fraction=eval_fraction, **data), tokenizer, max_length
    )


def test_clean_data_passes_every_check(tmp_path, tokenizer):
    data = prepare(tmp_path, tokenizer, eval_fraction=0.2)
    assert {r.name for r in data.preflight} == {
        "eos",
        "trained_tokens",
        "double_bos",
        "prompt_match",
        "truncation",
        "overlap",
    }
    assert failed(data) == {}
    enforce(data.preflight)


def test_double_bos_from_the_template(tmp_path, tokenizer):
    template = tmp_path / "twice.jinja"
    template.write_text("{{ bos_token }}{{ bos_token }}" + BUILTIN_TEMPLATES["alpaca"])
    data = prepare(tmp_path, tokenizer, template=str(template))
    assert "start with BOS twice" in failed(data)["double_bos"]


def test_eos_not_trained(tmp_path, tokenizer):
    data = prepare(tmp_path, tokenizer)
    labels = [row[:-1] + [-100] for row in data.train["labels"]]  # plant: EOS masked, as pad=eos notebooks do
    planted = data.train.remove_columns("labels").add_column("labels", labels)
    from tuneforge.preflight import check_eos

    passed, message = check_eos(planted, tokenizer.eos_token_id)
    assert not passed and "do not end with a trained EOS" in message


def test_answer_lost_to_truncation(tmp_path, tokenizer):
    rows = [*ROWS, {"prompt": "word " * 80, "completion": "never seen"}]
    data = prepare(tmp_path, tokenizer, rows=rows, max_length=48)
    assert "cut off by train.max_length=48" in failed(data)["trained_tokens"]


def test_empty_answer(tmp_path, tokenizer):
    data = prepare(tmp_path, tokenizer, rows=[*ROWS, {"prompt": "say nothing", "completion": "  "}])
    assert "1 with an empty answer" in failed(data)["trained_tokens"]


def test_too_many_samples_truncated(tmp_path, tokenizer):
    rows = [{"prompt": "go", "completion": "word " * 60} for _ in range(10)] + ROWS
    data = prepare(tmp_path, tokenizer, rows=rows, max_length=48)
    assert "more than the allowed 5%" in failed(data)["truncation"]
    allowed = prepare(
        tmp_path, tokenizer, rows=rows, max_length=48, preflight={"max_truncated_fraction": 0.9}
    )
    assert "truncation" not in failed(allowed)


def test_train_prompt_differs_from_inference_prompt(tmp_path, tokenizer):
    # The generation prompt ends with a space and the answer starts with "-": tokenized apart (as training
    # does per segment) they differ from the joint text inference tokenizes, where BPE merges " -".
    template = tmp_path / "space.jinja"
    template.write_text(
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\\n' }}"
        "{% else %}{{ 'A: ' + m['content'] + '\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
    )
    conversation = [
        {"role": "user", "content": "list"},
        {"role": "assistant", "content": "-la /tmp"},
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": "-l a.txt"},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": conversation}] * 10)
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0, template=str(template)), tokenizer, 64)
    assert "differently from the prompt inference builds" in failed(data)["prompt_match"]


def test_eval_rows_that_also_occur_in_training(tmp_path, tokenizer):
    data = prepare(tmp_path, tokenizer, rows=ROWS + ROWS, eval_fraction=0.2)
    assert "also occur in training" in failed(data)["overlap"]
    assert next(r for r in data.preflight if r.name == "overlap").severity == "warn", "a warning by default"


def test_failures_stop_training_unless_overridden(tmp_path, tokenizer):
    rows = [*ROWS, {"prompt": "say nothing", "completion": ""}]
    with pytest.raises(TuneforgeError, match="data.preflight.<check>: warn"):
        enforce(prepare(tmp_path, tokenizer, rows=rows).preflight)
    enforce(
        prepare(tmp_path, tokenizer, rows=rows, preflight=PreflightConfig(trained_tokens="warn")).preflight
    )
    off = prepare(tmp_path, tokenizer, rows=rows, preflight={"trained_tokens": "off"})
    assert "trained_tokens" not in {r.name for r in off.preflight}


def test_training_run_stops_before_the_first_step(tmp_path, tiny_models):
    from conftest import quick_config

    from tuneforge.finetune import run_finetune

    bad = write_jsonl(tmp_path / "bad.jsonl", [*ROWS, {"prompt": "x", "completion": ""}])
    config = quick_config(tiny_models("llama"), bad)
    with pytest.raises(TuneforgeError, match="preflight failed before training"):
        run_finetune(config, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "adapter").exists()
