"""One planted fault per preflight check, each a template or data file run through the real pipeline
(prepare_data), and the check fires with its message; a clean dataset passes every check; overrides work."""

import pytest
from conftest import build_metaspace_tokenizer, write_jsonl

from tuneforge.config.schema import DataConfig, ModelConfig, PreflightConfig
from tuneforge.data.preflight import enforce
from tuneforge.data.prepare import prepare_data
from tuneforge.data.templates import BUILTIN_TEMPLATES
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_tokenizer

ROWS = [{"prompt": f"count lines in file{i}.txt", "completion": f"wc -l file{i}.txt"} for i in range(20)]
EVERY_CHECK = {
    "eos",
    "trained_tokens",
    "double_bos",
    "template_parity",
    "prompt_match",
    "answer_tokens",
    "truncation",
    "overlap",
}


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


def template_file(tmp_path, text: str) -> str:
    path = tmp_path / "template.jinja"
    path.write_text(text)
    return str(path)


def test_clean_data_passes_every_check(tmp_path, tokenizer):
    data = prepare(tmp_path, tokenizer, eval_fraction=0.2)
    assert {r.name for r in data.preflight} == EVERY_CHECK
    assert failed(data) == {}
    enforce(data.preflight)


def test_template_without_eos_fails_eos(tmp_path, tokenizer):
    # The alpaca layout as notebooks often copy it: no eos_token after the response.
    no_eos = BUILTIN_TEMPLATES["alpaca"].replace(" + eos_token", "")
    assert no_eos != BUILTIN_TEMPLATES["alpaca"]
    data = prepare(tmp_path, tokenizer, template=template_file(tmp_path, no_eos))
    assert "do not end with a trained EOS" in failed(data)["eos"]
    assert set(failed(data)) == {"eos"}


def test_double_bos_from_the_template(tmp_path, tokenizer):
    twice = template_file(tmp_path, "{{ bos_token }}{{ bos_token }}" + BUILTIN_TEMPLATES["alpaca"])
    data = prepare(tmp_path, tokenizer, template=twice)
    assert "start with BOS twice" in failed(data)["double_bos"]


def test_answers_lost_to_truncation(tmp_path, tokenizer):
    rows = [*ROWS, *[{"prompt": "word " * 80, "completion": "never seen"}] * 2]
    data = prepare(tmp_path, tokenizer, rows=rows, max_length=48)
    message = failed(data)["truncation"]
    assert "2 of 22 samples (9.1%) are cut" in message and "2 of them lost their whole answer" in message
    assert data.train_stats.kept == 20


def test_empty_answer(tmp_path, tokenizer):
    data = prepare(tmp_path, tokenizer, rows=[*ROWS, {"prompt": "say nothing", "completion": "  "}])
    assert "1 rows have an empty answer" in failed(data)["trained_tokens"]


def test_too_many_samples_truncated_and_the_fix_is_proposed(tmp_path, tokenizer):
    rows = [{"prompt": "go", "completion": "word " * 60} for _ in range(10)] + ROWS
    data = prepare(tmp_path, tokenizer, rows=rows, max_length=48)
    message = failed(data)["truncation"]
    fits = -(-data.train_stats.p99_length // 64) * 64
    assert "More than the allowed 5%" in message and f"train.max_length: {fits}" in message
    assert data.train_stats.p99_length > 48
    allowed = prepare(
        tmp_path, tokenizer, rows=rows, max_length=48, preflight={"max_truncated_fraction": 0.9}
    )
    assert "truncation" not in failed(allowed)
    fixed = prepare(tmp_path, tokenizer, rows=rows, max_length=fits)
    assert "truncation" not in failed(fixed), "the proposed length does fit"


SPACE_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\\n' }}"
    "{% else %}{{ 'A: ' + m['content'] + eos_token + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
)
ANSWERS = [{"prompt": f"show lines of f{i}.txt", "completion": f"the lines of f{i}.txt"} for i in range(20)]


def test_truncation_advice_respects_the_models_context(tmp_path, tokenizer):
    rows = [{"prompt": "go", "completion": "word " * 60} for _ in range(10)] + ROWS
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0), tokenizer, None, context_length=48)
    message = failed(data)["truncation"]
    assert (
        data.max_length == 48 and "the model's context is 48" in message and "data.too_long: drop" in message
    )
    assert "train.max_length:" not in message, "no advice to use a length the model cannot take"


def test_generation_prompt_ending_in_a_space_fails_prompt_match(tmp_path, tokenizer):
    # In the conversation 'A: ' + 'the' is tokenized 'A', ':', 'Ġthe'; at inference the prompt ends in 'Ġ'.
    template = template_file(tmp_path, SPACE_TEMPLATE)
    data = prepare(tmp_path, tokenizer, rows=ANSWERS, template=template)
    message = failed(data)["prompt_match"]
    assert "20 of 20 samples" in message and "differs from the prompt inference builds" in message
    assert data.train_stats.prompt_mismatches == list(range(20))
    tolerant = prepare(
        tmp_path, tokenizer, rows=ANSWERS, template=template, preflight={"max_prompt_mismatch_fraction": 1.0}
    )
    assert "prompt_match" not in failed(tolerant)


def test_few_boundary_merges_are_reported_within_the_allowance(tmp_path, tokenizer):
    # Answers that start with a newline keep the prompt's trailing space a token of its own: no merge. One
    # answer in 200 starts with a word, and merges with it.
    rows = [{"prompt": f"show f{i}.txt", "completion": f"\nthe lines of f{i}.txt"} for i in range(199)]
    rows.append({"prompt": "show x.txt", "completion": "the lines of x.txt"})
    data = prepare(tmp_path, tokenizer, rows=rows, template=template_file(tmp_path, SPACE_TEMPLATE))
    result = {r.name: r for r in data.preflight}["prompt_match"]
    assert (
        result.passed and "1 of 200 samples" in result.message and "within the allowed 1%" in result.message
    )
    assert data.train_stats.prompt_mismatches == [199]
    assert data.train_stats.answer_mismatches == [], "the merged answer still decodes to its text"
    enforce(data.preflight)  # the whole preflight lets the run start


def test_tokenizer_that_cannot_represent_the_answer_fails_answer_tokens(tmp_path):
    # A SentencePiece-style tokenizer without byte fallback turns characters it never saw into <unk>.
    lossy = build_metaspace_tokenizer(byte_fallback=False)
    rows = [{"prompt": f"order {i}", "completion": f"Café au lait {i}"} for i in range(10)]
    data = prepare(tmp_path, lossy, rows=rows, template="alpaca")
    assert "do not decode to their answer text" in failed(data)["answer_tokens"]
    assert data.train_stats.answer_mismatches == list(range(10))
    assert "prompt_match" not in failed(data), "the prompts themselves are fine"


def test_eval_rows_that_also_occur_in_training(tmp_path, tokenizer):
    data = prepare(tmp_path, tokenizer, rows=ROWS + ROWS, eval_fraction=0.2)
    assert (
        "also occur in training" in failed(data)["overlap"] and "data.dedupe: true" in failed(data)["overlap"]
    )
    separate = write_jsonl(tmp_path / "eval.jsonl", ROWS[:3])
    with_file = prepare(tmp_path, tokenizer, eval_path=str(separate))
    assert "Remove those rows from data.eval_path" in failed(with_file)["overlap"], (
        "no advice to set what is set"
    )
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

    from tuneforge.train.run import run_finetune

    bad = write_jsonl(tmp_path / "bad.jsonl", [*ROWS, {"prompt": "x", "completion": ""}])
    config = quick_config(tiny_models("llama"), bad)
    with pytest.raises(TuneforgeError, match="preflight failed before training"):
        run_finetune(config, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "adapter").exists()
