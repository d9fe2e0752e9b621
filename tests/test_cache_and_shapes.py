"""The tokenization cache (reuse when nothing changed, re-tokenize when anything that shapes ids did), and the
sharegpt and plain-text shapes."""

from conftest import write_jsonl

from tuneforge.config.schema import DataConfig, ModelConfig, PreflightConfig
from tuneforge.data.encode import IGNORE
from tuneforge.data.prepare import prepare_data
from tuneforge.model.load import load_tokenizer


def test_unchanged_config_reuses_and_changes_retokenize(tmp_path, tiny_models, demo_files):
    llama = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    config = DataConfig(path=str(demo_files[0]), eval_path=str(demo_files[1]), template="alpaca")
    first = prepare_data(config, llama, 64)
    again = prepare_data(config, load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama")))), 64)
    assert (first.cache_hit, again.cache_hit) == (False, True)
    assert again.train["input_ids"] == first.train["input_ids"] and again.train_stats == first.train_stats

    other_tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("gpt2"))))
    assert not prepare_data(config, other_tokenizer, 64).cache_hit
    assert not prepare_data(config.model_copy(update={"template": "chatml"}), llama, 64).cache_hit
    assert not prepare_data(config, llama, 80).cache_hit
    assert not prepare_data(config.model_copy(update={"train_on": "all"}), llama, 64).cache_hit
    assert prepare_data(
        config.model_copy(update={"preflight": PreflightConfig(overlap="off")}), llama, 64
    ).cache_hit

    edited = tmp_path / "train.jsonl"
    edited.write_text(demo_files[0].read_text().replace("ls -la", "ls -l"))
    assert not prepare_data(config.model_copy(update={"path": str(edited)}), llama, 64).cache_hit
    assert not prepare_data(config.model_copy(update={"cache": False}), llama, 64).cache_hit


def test_sharegpt_conversations(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    turns = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "count a.txt"},
        {"from": "gpt", "value": "wc -l a.txt"},
    ]
    path = write_jsonl(tmp_path / "sg.jsonl", [{"conversations": turns}] * 4)
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0, template="chatml"), tokenizer, 160)
    assert data.format == "sharegpt"
    ids, labels = data.train[0]["input_ids"], data.train[0]["labels"]
    assert "<|im_start|>system\nBe brief." in tokenizer.decode(ids)
    assert tokenizer.decode([i for i, x in zip(ids, labels) if x != IGNORE]) == "wc -l a.txt</s>"


def test_plain_text_trains_every_token_and_ends_with_eos(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "list the files in /tmp"}] * 4)
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0), tokenizer, 64)
    assert data.format == "text"
    ids, labels = data.train[0]["input_ids"], data.train[0]["labels"]
    assert ids[0] == tokenizer.bos_token_id and labels[0] == IGNORE and labels[1:] == ids[1:]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.decode(ids[1:-1]) == "list the files in /tmp"
