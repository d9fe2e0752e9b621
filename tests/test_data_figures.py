"""The figures `tuneforge data` and training print agree or say why not: the empty-answer finding names its
rows, the samples title says how many rows they came from, truncation counts the samples that have an
answer, and max_length: auto says when the model's context capped it."""

from conftest import quick_config, write_jsonl
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import config_to_yaml
from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data.preflight import named_rows
from tuneforge.data.prepare import prepare_data
from tuneforge.data.report import length_line
from tuneforge.model.load import load_tokenizer

ROWS = [{"prompt": f"count lines in file{i}.txt", "completion": f"wc -l file{i}.txt"} for i in range(30)]


def test_the_empty_answer_finding_names_the_rows(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    rows = [{**row, "completion": ""} if i in (3, 17) else row for i, row in enumerate(ROWS)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    # The held-out split shuffles the rows: the finding still names their places in the file.
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0.2, seed=1), tokenizer, 64)
    stats = data.train_stats
    finding = next(r.message for r in data.preflight if r.name == "trained_tokens")
    assert f"({path}: {named_rows(stats.empty_rows)})" in finding and set(stats.empty_rows) <= {3, 17}
    assert stats.empty_rows and all(rows[n]["completion"] == "" for n in stats.empty_rows)
    assert named_rows([4]) == "row 4" and named_rows(list(range(8))) == "rows 0, 1, 2, 3, 4 and 3 more"


def test_samples_and_rows_are_labelled_where_they_differ(tmp_path, tiny_models):
    rows = [
        *ROWS[:8],
        {"prompt": "say nothing", "completion": ""},
        {"prompt": "word " * 80, "completion": "x"},
    ]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    config = quick_config(
        tiny_models("llama"),
        path,
        data={"eval_fraction": 0, "preflight": {"trained_tokens": "warn", "truncation": "warn"}},
        train={"max_length": 48},
    )
    (tmp_path / "c.yaml").write_text(config_to_yaml(config))
    result = CliRunner().invoke(app, ["data", str(tmp_path / "c.yaml"), "--n", "0"])
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())  # the table wraps its title
    assert (
        "8 training samples of 10 rows read (left out: 1 empty answer, 1 answer cut off by max length)"
        in shown
    )
    assert "1 of 9 samples (11.1%) are cut" in shown, "of the samples with an answer, as prompt_match counts"
    assert "9 training prompts equal their inference prompts" in shown


def test_auto_length_says_when_the_context_capped_it(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    long_rows = [{"prompt": "go", "completion": "word " * 60} for _ in range(10)]
    path = write_jsonl(tmp_path / "rows.jsonl", long_rows)
    capped = prepare_data(DataConfig(path=str(path), eval_fraction=0), tokenizer, None, context_length=48)
    assert capped.max_length == 48
    assert "auto -> 48, capped at the model's context length" in length_line(capped, None)
    assert "capped" not in length_line(capped, 48), "a length the user chose is not auto's doing"
    roomy = prepare_data(DataConfig(path=str(path), eval_fraction=0), tokenizer, None, context_length=4096)
    assert "capped" not in length_line(roomy, None) and "(99% of samples fit in" in length_line(roomy, None)
