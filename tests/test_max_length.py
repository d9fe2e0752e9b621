"""train.max_length: auto picks the smallest multiple of 64 that covers 99% of the tokenized samples, capped
at the model's context; the number is shown at the start of the run and recorded in the manifest."""

import json
import math

from conftest import quick_config, write_jsonl
from hypothesis import example, given
from hypothesis import strategies as st
from rich.console import Console

from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data.prepare import prepare_data
from tuneforge.data.tokenize import auto_max_length
from tuneforge.model.load import load_tokenizer
from tuneforge.train.run import run_finetune


@given(st.lists(st.integers(1, 5000), min_size=1, max_size=400), st.none() | st.integers(64, 4096))
@example(list(range(1, 201)), None)  # 99% is 198 tokens: 256; covering 95% would give 192
def test_auto_length_is_the_smallest_multiple_of_64_covering_99_percent(lengths, context):
    chosen = auto_max_length(lengths, context)
    covered = sum(n <= chosen for n in lengths) / len(lengths)
    if context is not None and chosen == context:
        return  # capped: the model cannot take more
    assert chosen % 64 == 0 and covered >= 0.99
    smaller = chosen - 64
    assert smaller <= 0 or sum(n <= smaller for n in lengths) / len(lengths) < 0.99, (
        "no smaller one covers 99%"
    )
    assert context is None or chosen <= context


def rows_of_lengths(n_short: int, n_long: int) -> list[dict]:
    return [{"prompt": "count a.txt", "completion": "wc -l a.txt"}] * n_short + [
        {"prompt": "count a.txt", "completion": "wc -l a.txt " * 40}
    ] * n_long


def test_auto_on_data_covers_99_percent_and_respects_the_context(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    path = write_jsonl(tmp_path / "rows.jsonl", rows_of_lengths(99, 1))
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0), tokenizer, None, 1024)
    short = min(data.train["length"])
    assert data.max_length == math.ceil(short / 64) * 64, "the one long sample (1%) does not set the length"
    assert data.train_stats.truncated == 1 and all(r.passed for r in data.preflight if r.name == "truncation")
    many_long = write_jsonl(tmp_path / "long.jsonl", rows_of_lengths(90, 10))
    capped = prepare_data(DataConfig(path=str(many_long), eval_fraction=0), tokenizer, None, 64)
    assert capped.max_length == 64, "never longer than the model's context"
    assert capped.train_stats.truncated == 10 and capped.train_stats.p99_length > 64
    uncapped = prepare_data(DataConfig(path=str(many_long), eval_fraction=0), tokenizer, None, 4096)
    assert uncapped.max_length == math.ceil(uncapped.train_stats.p99_length / 64) * 64
    assert uncapped.train_stats.truncated == 0


def test_auto_is_the_default_and_is_shown_and_recorded(tmp_path, tiny_models, demo_files):
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_length": "auto", "max_steps": 1})
    console = Console(record=True, width=200)
    run_finetune(config, tmp_path / "run", console=console)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    chosen = manifest["max_length"]
    assert chosen % 64 == 0 and f"auto -> {chosen} (99% of samples fit in" in console.export_text()
    from tuneforge.config.schema import TrainConfig

    assert TrainConfig().max_length == "auto"
