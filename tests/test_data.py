"""Data stage: loading, shapes, masking (EOS trained even when pad == eos), BOS once, every answer trained."""

import json

import pytest
from conftest import write_jsonl
from transformers import AutoTokenizer

from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data.collate import PadCollator
from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.prepare import prepare_data
from tuneforge.data.sources import load_raw_data
from tuneforge.data.templates import BUILTIN_TEMPLATES, install_chat_template
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_tokenizer

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
    encoder = ChatEncoder(tok)
    short = encoder.encode_conversation(QA)
    long = encoder.encode_conversation([QA[0], {"role": "assistant", "content": "wc -l a.txt and much more"}])
    features = [{"input_ids": s.input_ids, "labels": s.labels} for s in (short, long)]
    batch = PadCollator(tok.pad_token_id)(features)
    n = len(short.input_ids)
    assert batch["labels"][0, n - 1] == tok.eos_token_id, "EOS is the last trained label"
    assert (batch["labels"][0, n:] == IGNORE).all(), "padding is ignored by position"
    assert (batch["input_ids"][0, n:] == tok.eos_token_id).all(), "padding uses the eos id"


def test_only_the_completion_is_trained(llama_tokenizer):
    tok = llama_tokenizer
    install_chat_template(tok, "alpaca")
    sample = ChatEncoder(tok).encode_conversation(QA)
    trained = [i for i, label in zip(sample.input_ids, sample.labels) if label != IGNORE]
    assert tok.decode(trained) == "wc -l a.txt</s>"
    everything = ChatEncoder(tok).encode_conversation(QA, train_on="all")
    # Position 0 is never a target after the causal shift, so BOS keeps -100 either way.
    assert everything.labels[1:] == everything.input_ids[1:] and everything.labels[0] == IGNORE


@pytest.mark.parametrize("template", sorted(BUILTIN_TEMPLATES))
def test_every_prompt_equals_transformers_own_inference_prompt(llama_tokenizer, template):
    """Before each answer of a multi-turn conversation, training holds exactly the ids a plain transformers
    user would feed the model (`apply_chat_template(..., add_generation_prompt=True)` plus BOS)."""
    tok = llama_tokenizer
    install_chat_template(tok, template)
    encoder = ChatEncoder(tok)
    turns = [*QA, {"role": "user", "content": "and b.txt?"}, {"role": "assistant", "content": "wc -l b.txt"}]
    sample = encoder.encode_conversation(turns)
    assert [a.turn for a in sample.answers] == [1, 3]
    for answer in sample.answers:
        reference = tok.apply_chat_template(
            turns[: answer.turn], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        reference = reference if reference[:1] == [tok.bos_token_id] else [tok.bos_token_id, *reference]
        assert sample.input_ids[: answer.start] == reference
        assert encoder.prompt_ids(turns[: answer.turn]) == reference
    assert sample.input_ids[0] == tok.bos_token_id and sample.input_ids[1] != tok.bos_token_id
    assert sample.labels[-1] == tok.eos_token_id


def test_template_without_eos_trains_no_invented_eos(llama_tokenizer):
    """The encoder trains what the template writes: no EOS appended behind its back (preflight `eos` then
    reports the template)."""
    tok = llama_tokenizer
    tok.chat_template = "{% for m in messages %}{{ m['content'] + '\\n' }}{% endfor %}"
    sample = ChatEncoder(tok).encode_conversation(QA)
    assert tok.eos_token_id not in sample.input_ids
    assert tok.decode([i for i, x in zip(sample.input_ids, sample.labels) if x != IGNORE]) == "wc -l a.txt\n"


def test_an_eos_string_inside_an_answer_does_not_end_it(llama_tokenizer):
    """Only the EOS the template writes after the content ends an answer; one quoted inside is content."""
    tok = llama_tokenizer
    install_chat_template(tok, "alpaca")
    answer = "close the tag with </s> then run it"
    sample = ChatEncoder(tok).encode_conversation([QA[0], {"role": "assistant", "content": answer}])
    trained = tok.decode([i for i, x in zip(sample.input_ids, sample.labels) if x != IGNORE])
    assert trained == answer + "</s>" and sample.answers[-1].text == answer + "</s>"


def test_template_that_writes_bos_gets_no_second_bos(llama_tokenizer):
    tok = llama_tokenizer
    tok.chat_template = "{{ bos_token }}" + BUILTIN_TEMPLATES["mistral"]
    ids = ChatEncoder(tok).encode_conversation(QA).input_ids
    assert ids.count(tok.bos_token_id) == 1


def test_multi_turn_trains_every_assistant_turn(llama_tokenizer):
    tok = llama_tokenizer
    install_chat_template(tok, "chatml")
    turns = [*QA, {"role": "user", "content": "and b.txt?"}, {"role": "assistant", "content": "wc -l b.txt"}]
    sample = ChatEncoder(tok).encode_conversation(turns)
    trained = tok.decode([i for i, label in zip(sample.input_ids, sample.labels) if label != IGNORE])
    assert trained == "wc -l a.txt</s>wc -l b.txt</s>"


def test_tokenizer_chat_template_is_used_when_present(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models("qwen2"))
    assert "own chat template" in install_chat_template(tok, "auto")
    sample = ChatEncoder(tok).encode_conversation(QA)
    assert tok.decode(sample.input_ids).startswith("<|im_start|>user\n")
    assert sample.labels[-1] == tok.eos_token_id


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
