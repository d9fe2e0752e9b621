"""Data stage: loading, shapes, masking (EOS trained even when pad == eos), BOS once, train == inference prompt."""

import json

import pytest
from conftest import write_jsonl
from transformers import AutoTokenizer

from tuneforge.batching import PadCollator
from tuneforge.config import DataConfig, ModelConfig
from tuneforge.data import prepare_data
from tuneforge.data_sources import load_raw_data
from tuneforge.errors import TuneforgeError
from tuneforge.modeling import load_tokenizer
from tuneforge.templates import BUILTIN_TEMPLATES, install_chat_template
from tuneforge.tokenization import IGNORE, Encoder, build_sample, inference_prompt_ids

QA = [
    {"role": "user", "content": "count the lines in a.txt"},
    {"role": "assistant", "content": "wc -l a.txt"},
]


@pytest.fixture
def llama_tokenizer(tiny_models):
    return load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))


def test_pad_equal_to_eos_still_trains_eos(llama_tokenizer):
    tok = llama_tokenizer
    assert tok.pad_token_id == tok.eos_token_id, "the tiny base has no pad token, like real base models"
    install_chat_template(tok, "alpaca")
    short = build_sample(Encoder(tok), QA)
    long = build_sample(
        Encoder(tok), [QA[0], {"role": "assistant", "content": "wc -l a.txt and much more text"}]
    )
    batch = PadCollator(tok.pad_token_id)([short, long])
    n = len(short["input_ids"])
    assert batch["labels"][0, n - 1] == tok.eos_token_id, "EOS is the last trained label"
    assert (batch["labels"][0, n:] == IGNORE).all(), "padding is ignored by position"
    assert (batch["input_ids"][0, n:] == tok.eos_token_id).all(), "padding uses the eos id"


def test_only_the_completion_is_trained(llama_tokenizer):
    tok = llama_tokenizer
    install_chat_template(tok, "alpaca")
    sample = build_sample(Encoder(tok), QA)
    trained = [i for i, label in zip(sample["input_ids"], sample["labels"]) if label != IGNORE]
    assert tok.decode(trained) == "wc -l a.txt</s>"
    everything = build_sample(Encoder(tok), QA, train_on="all")
    # Position 0 is never a target after the causal shift, so BOS keeps -100 either way.
    assert everything["labels"][1:] == everything["input_ids"][1:]


@pytest.mark.parametrize("template", sorted(BUILTIN_TEMPLATES))
def test_training_prompt_equals_inference_prompt(llama_tokenizer, template):
    tok = llama_tokenizer
    install_chat_template(tok, template)
    encoder = Encoder(tok)
    sample = build_sample(encoder, QA)
    prompt_len = sample["labels"].index(next(label for label in sample["labels"] if label != IGNORE))
    assert sample["input_ids"][:prompt_len] == inference_prompt_ids(encoder, QA[:1])
    assert sample["input_ids"][0] == tok.bos_token_id and sample["input_ids"][1] != tok.bos_token_id
    assert sample["labels"][-1] == tok.eos_token_id


def test_template_that_writes_bos_gets_no_second_bos(llama_tokenizer):
    tok = llama_tokenizer
    tok.chat_template = "{{ bos_token }}" + BUILTIN_TEMPLATES["mistral"]
    ids = build_sample(Encoder(tok), QA)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1


def test_multi_turn_trains_every_assistant_turn(llama_tokenizer):
    tok = llama_tokenizer
    install_chat_template(tok, "chatml")
    turns = [*QA, {"role": "user", "content": "and b.txt?"}, {"role": "assistant", "content": "wc -l b.txt"}]
    sample = build_sample(Encoder(tok), turns)
    trained = tok.decode([i for i, label in zip(sample["input_ids"], sample["labels"]) if label != IGNORE])
    assert trained == "wc -l a.txt</s>wc -l b.txt</s>"


def test_tokenizer_chat_template_is_used_when_present(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models("qwen2"))
    assert "own chat template" in install_chat_template(tok, "auto")
    sample = build_sample(Encoder(tok), QA)
    assert tok.decode(sample["input_ids"]).startswith("<|im_start|>user\n")
    assert sample["labels"][-1] == tok.eos_token_id


def test_shapes_are_detected(tmp_path, llama_tokenizer):
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "input": "x", "output": "o"}] * 4)
    chat = write_jsonl(tmp_path / "m.jsonl", [{"messages": QA}] * 4)
    renamed = write_jsonl(tmp_path / "p.jsonl", [{"question": "q", "answer": "a"}] * 4)
    assert prepare_data(DataConfig(path=str(alpaca)), llama_tokenizer, 64).format == "alpaca"
    assert prepare_data(DataConfig(path=str(chat)), llama_tokenizer, 64).format == "messages"
    mapped = DataConfig(path=str(renamed), columns={"prompt": "question", "completion": "answer"})
    assert prepare_data(mapped, llama_tokenizer, 64).format == "prompt_completion"


def test_missing_column_lists_the_columns_that_exist(tmp_path, llama_tokenizer):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "q", "answer": "a"}] * 4)
    config = DataConfig(path=str(path), format="prompt_completion", columns={"prompt": "question"})
    with pytest.raises(TuneforgeError) as err:
        prepare_data(config, llama_tokenizer, 64)
    assert "column 'completion' not found" in str(err.value)
    assert "Columns that exist: question, answer" in str(err.value)


def test_missing_data_file_names_the_path(tmp_path):
    with pytest.raises(TuneforgeError, match="data file not found: .*missing.jsonl"):
        load_raw_data(str(tmp_path / "missing.jsonl"))


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n{not json}\n")
    with pytest.raises(TuneforgeError, match=r"bad.jsonl:2: invalid JSON"):
        load_raw_data(str(path))


def test_sampling_and_split_are_seeded(demo_files):
    a = load_raw_data(str(demo_files[0]), max_samples=50, eval_fraction=0.2, seed=1)
    b = load_raw_data(str(demo_files[0]), max_samples=50, eval_fraction=0.2, seed=1)
    assert (len(a.train), len(a.eval)) == (40, 10)
    assert a.train["prompt"] == b.train["prompt"]


def test_truncation_and_empty_rows_are_counted(tmp_path, llama_tokenizer):
    rows = [
        {"prompt": "p " * 200, "completion": "c"},
        {"prompt": "x", "completion": ""},
        {"prompt": "y", "completion": "z"},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0), llama_tokenizer, 32)
    assert data.train_stats.empty_completion == 1
    assert data.train_stats.truncated == 1 and data.train_stats.no_trained_tokens == 1
    assert data.train_stats.kept == 1
