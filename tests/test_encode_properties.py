"""Property tests of the one prompt encoder over random conversations, single- and multi-turn.

Tokenizers: stories260K's SentencePiece and the real GPT-2 BPE (from ../shared, skipped without it), a tiny
Qwen2-style tokenizer with its own chatml template, and a SentencePiece-style Metaspace BPE built here (so the
leading-space case runs without ../shared). For every answer of every conversation:

- the trained ids decode to exactly the answer as the template renders it (content + EOS for most
  templates), plus any prompt characters the tokenizer merged into the first token (the boundary rule);
- the prompt inference builds equals transformers' own `apply_chat_template(..., add_generation_prompt=True,
  tokenize=True)`, and the ids before the answer equal it unless the tokenizer merged across the boundary;
- strictly, with answers that do not start with whitespace, no built-in template merges anything (the
  README's claim), except `raw`, and `llama3` on GPT-2's BPE.
"""

import pytest
from conftest import needs_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.templates import install_chat_template
from tuneforge.data.tokenize import answers_decode_exactly, prompt_matches

# Letters, digits, punctuation, whitespace runs and characters outside every tiny vocabulary (byte fallback).
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,:;!?'\"-_/()#*=+[]{}\n\t" + "éüß中文😀"
content = st.text(ALPHABET, min_size=1, max_size=30).filter(str.strip)


@st.composite
def conversations(draw, stripped: bool = False):
    text = content.map(str.strip).filter(bool) if stripped else content
    turns = draw(st.integers(1, 3))
    messages = [{"role": "system", "content": draw(text)}] if draw(st.booleans()) else []
    for _ in range(turns):
        messages += [{"role": "user", "content": draw(text)}, {"role": "assistant", "content": draw(text)}]
    return messages


def reference_prompt(tokenizer, encoder: ChatEncoder, messages) -> list[int]:
    """What a plain transformers user feeds the model: the chat template's own tokenization, plus the BOS
    the tokenizer adds to any text unless the template wrote it."""
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return [tokenizer.bos_token_id, *ids] if encoder.adds_bos and ids[:1] != [tokenizer.bos_token_id] else ids


def boundary_merged(encoder: ChatEncoder, text: str, start: int) -> bool:
    """The tokenizer tokenizes the text before `start` differently once the answer follows it: a token
    straddles the boundary, or the prompt's last characters tokenize differently on their own."""
    whole = encoder.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    before = [i for i, (_, end) in zip(whole["input_ids"], whole["offset_mapping"]) if end <= start]
    straddles = any(s < start < e for s, e in whole["offset_mapping"])
    return straddles or before != encoder.tokenizer(text[:start], add_special_tokens=False)["input_ids"]


def check_conversation(tokenizer, messages, *, content_plus_eos: bool, strict: bool) -> None:
    encoder = ChatEncoder(tokenizer)
    sample = encoder.encode_conversation(messages)
    text, spans = encoder.answer_spans(messages)
    assert len(sample.answers) == len(spans) == sum(m["role"] == "assistant" for m in messages)
    for answer, (_, first, end) in zip(sample.answers, spans):
        rendered = text[first:end]
        if content_plus_eos:
            assert rendered == messages[answer.turn]["content"] + tokenizer.eos_token
        decoded = encoder.decode_span(sample.input_ids, answer.start, answer.end)
        assert decoded == answer.merged + rendered
        assert text[first - len(answer.merged) : first] == answer.merged
        assert sample.labels[answer.start : answer.end] == sample.input_ids[answer.start : answer.end]
        inference = encoder.prompt_ids(messages[: answer.turn])
        assert inference == reference_prompt(tokenizer, encoder, messages[: answer.turn])
        matches = sample.input_ids[: answer.start] == inference
        assert matches or boundary_merged(encoder, text, first)
        if strict:
            assert matches and not answer.merged, "no merge at a built-in template's boundary"
    trained = sum(label != IGNORE for label in sample.labels)
    assert trained == sum(a.end - a.start for a in sample.answers), "only answers are trained"
    assert sample.labels[-1] == tokenizer.eos_token_id, "the final answer ends with its trained EOS"
    assert answers_decode_exactly(encoder, sample), "preflight's answer_tokens passes"
    if strict:
        assert prompt_matches(encoder, messages, sample), "preflight's prompt_match passes"


PROPERTY = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BUILTINS = ["alpaca", "chatml", "phi", "zephyr", "llama3", "mistral", "llama2", "raw"]
# The template's own text around each answer is more than content + EOS in these.
DECORATED = {"phi", "mistral", "llama2"}


@pytest.fixture(scope="module")
def stories260k():
    return AutoTokenizer.from_pretrained(needs_shared("models", "stories260K"))


@pytest.fixture(scope="module")
def gpt2():
    return AutoTokenizer.from_pretrained(needs_shared("models", "gpt2-tokenizer-random"))


@pytest.mark.parametrize("template", BUILTINS)
@PROPERTY
@given(messages=conversations(), plain=conversations(stripped=True))
def test_sentencepiece_answers_are_the_texts_tokens(stories260k, template, messages, plain):
    install_chat_template(stories260k, template)
    check_conversation(stories260k, messages, content_plus_eos=template not in DECORATED, strict=False)
    check_conversation(
        stories260k, plain, content_plus_eos=template not in DECORATED, strict=template != "raw"
    )


@pytest.mark.parametrize("template", BUILTINS)
@PROPERTY
@given(messages=conversations(), plain=conversations(stripped=True))
def test_gpt2_bpe_answers_are_the_texts_tokens(gpt2, template, messages, plain):
    install_chat_template(gpt2, template)
    check_conversation(gpt2, messages, content_plus_eos=template not in DECORATED, strict=False)
    strict = template not in ("raw", "llama3")
    check_conversation(gpt2, plain, content_plus_eos=template not in DECORATED, strict=strict)


@PROPERTY
@given(messages=conversations(), plain=conversations(stripped=True))
def test_tokenizer_with_its_own_chat_template(tiny_models, messages, plain):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("qwen2"))
    assert "own chat template" in install_chat_template(tokenizer, "auto")
    check_conversation(tokenizer, messages, content_plus_eos=True, strict=False)
    check_conversation(tokenizer, plain, content_plus_eos=True, strict=True)


@pytest.mark.parametrize("template", ["alpaca", "phi"])
@PROPERTY
@given(messages=conversations(), plain=conversations(stripped=True))
def test_metaspace_tokenizer_gets_no_invented_leading_space(metaspace_tokenizer, template, messages, plain):
    # Not strict: this vocabulary was trained on text joining prompt and answer with a newline, so it has
    # merges like '\nf' that real SentencePiece vocabularies (byte-fallback newlines) do not.
    install_chat_template(metaspace_tokenizer, template)
    check_conversation(metaspace_tokenizer, messages, content_plus_eos=template != "phi", strict=False)
    check_conversation(metaspace_tokenizer, plain, content_plus_eos=template != "phi", strict=False)


def test_sentencepiece_answer_has_no_invented_space(stories260k):
    """The README's own example: 'Joint pain' was trained as '▁Joint pain' when encoded apart from its prompt."""
    install_chat_template(stories260k, "alpaca")
    encoder = ChatEncoder(stories260k)
    messages = [
        {"role": "user", "content": "What are the symptoms of flu?"},
        {"role": "assistant", "content": "Joint pain"},
    ]
    sample = encoder.encode_conversation(messages)
    answer = sample.answers[-1]
    assert encoder.decode_span(sample.input_ids, answer.start, answer.end) == "Joint pain</s>"
    assert stories260k.convert_ids_to_tokens(sample.input_ids[answer.start])[0] != "▁"
    whole = stories260k(encoder.render(messages, add_generation_prompt=False), add_special_tokens=False)[
        "input_ids"
    ]
    # the template writes BOS itself (template parity), so the rendered text holds it too
    assert sample.input_ids == whole[: len(sample.input_ids)], "the ids are the whole text's tokens"
