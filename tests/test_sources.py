"""Several sources mixed with weights, deduplication, length filters, and a malformed CSV row."""

import pytest
from conftest import write_jsonl

from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data.prepare import prepare_data
from tuneforge.data.sources import load_raw_data
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_tokenizer


@pytest.fixture
def tokenizer(tiny_models):
    return load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))


def test_mix_keeps_each_sources_shape_and_applies_weights(tmp_path, tokenizer):
    chat = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(20)
        ],
    )
    faq = tmp_path / "faq.csv"
    faq.write_text("question,reply\n" + "".join(f"what is {i},it is {i}\n" for i in range(20)))
    config = DataConfig(
        mix=[
            {"path": str(chat), "format": "messages", "weight": 2},
            {
                "path": str(faq),
                "format": "prompt_completion",
                "columns": {"prompt": "question", "completion": "reply"},
                "weight": 0.5,
            },
        ],
        eval_fraction=0.1,
        template="alpaca",
    )
    data = prepare_data(config, tokenizer, 64)
    texts = [tokenizer.decode(ids) for ids in data.train["input_ids"]]
    assert sum("### Instruction:\nq" in t for t in texts) == 2 * 18, "chat rows used twice"
    assert sum("### Instruction:\nwhat is" in t for t in texts) == 9, "a seeded half of the FAQ rows"
    assert len(data.eval) == 4 and data.train_stats.kept == 45
    assert not any(r.name == "overlap" and not r.passed for r in data.preflight), (
        "upsampling never leaks into eval"
    )


def test_mix_refuses_text_with_conversations(tmp_path, tokenizer):
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": "plain"}] * 4)
    chat = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "p", "completion": "c"}] * 4)
    config = DataConfig(mix=[{"path": str(text)}, {"path": str(chat)}])
    with pytest.raises(TuneforgeError, match="cannot be mixed"):
        prepare_data(config, tokenizer, 64)


def test_exactly_one_of_path_and_mix():
    with pytest.raises(ValueError, match="exactly one of data.path"):
        DataConfig(path="a.jsonl", mix=[{"path": "b.jsonl"}])


def test_dedupe_drops_exact_duplicates_before_the_split(tmp_path):
    rows = [{"prompt": f"p{i % 5}", "completion": f"c{i % 5}"} for i in range(20)]
    path = write_jsonl(tmp_path / "dup.jsonl", rows)
    assert len(load_raw_data(str(path), eval_fraction=0, dedupe=True).train) == 5
    assert len(load_raw_data(str(path), eval_fraction=0).train) == 20


def test_length_filters(tmp_path, tokenizer):
    rows = [
        {"prompt": "go", "completion": "word " * 60},
        {"prompt": "p", "completion": "c"},
        {"prompt": "list files", "completion": "ls -la /tmp"},
    ]
    path = write_jsonl(tmp_path / "len.jsonl", rows)
    base = DataConfig(path=str(path), eval_fraction=0, preflight={"truncation": "off"})
    truncated = prepare_data(base, tokenizer, 40)
    assert truncated.train_stats.truncated == 1 and truncated.train_stats.kept == 3
    dropped = prepare_data(base.model_copy(update={"too_long": "drop", "min_tokens": 33}), tokenizer, 40)
    assert (dropped.train_stats.dropped_long, dropped.train_stats.dropped_short) == (1, 1)
    assert dropped.train_stats.kept == 1 and dropped.train_stats.truncated == 0


def test_malformed_csv_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('prompt,completion\na,b\n"multi\nline",ok\nc,d,e\n')
    with pytest.raises(
        TuneforgeError, match=r"bad.csv:5: 3 fields where the header has 2 \(prompt, completion\)"
    ):
        load_raw_data(str(bad))


def test_parquet_and_saved_folders_load(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = Dataset.from_dict({"prompt": ["a", "b", "c"], "completion": ["x", "y", "z"]})
    rows.to_parquet(str(tmp_path / "rows.parquet"))
    rows.save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": rows, "validation": rows}).save_to_disk(str(tmp_path / "saved_dict"))
    assert load_raw_data(str(tmp_path / "rows.parquet"), eval_fraction=0).train["prompt"] == ["a", "b", "c"]
    assert len(load_raw_data(str(tmp_path / "saved"), eval_fraction=0).train) == 3
    assert len(load_raw_data(str(tmp_path / "saved_dict"), split="validation", eval_fraction=0).train) == 3
    with pytest.raises(TuneforgeError, match="no split 'test'; it has train, validation"):
        load_raw_data(str(tmp_path / "saved_dict"), split="test")
