"""The engine's streaming rules without a model: whatever tokens arrive and whatever stop strings a client
sets, the streamed pieces add up to the whole answer, never show a stop string, and end where the
earliest stop starts. Plus its limits: the in-flight cap, the deadline, empty prompts."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuneforge.config.schema import ServeConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.errors import TuneforgeError
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engines.transformers import TransformersEngine as Engine
from tuneforge.infer.load import Served
from tuneforge.infer.requests import Busy, Job, streamable


@pytest.fixture(scope="module")
def served(metaspace_tokenizer) -> Served:
    tokenizer = copy.deepcopy(metaspace_tokenizer)
    return Served(
        "m",
        model=None,
        adapter=None,
        encoder=ChatEncoder(tokenizer),
        system_prompt=None,
        stop_ids=[tokenizer.eos_token_id],
    )


def run_job(served: Served, tokens: list[int], stops: tuple[str, ...], budget: int = 10_000):
    events = []
    job = Job(served, [1], Decoding(max_new_tokens=budget, stop=stops), events.append, deadline=float("inf"))
    for token in tokens:
        if job.step(token):
            break
    job.finish("length", job.ids)
    return job, events


WORDS = ["list", " the", " files", " in", " /srv", "\n", "User:", " User", ":", "  ", "é", "ls -la", "Us"]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
    stops=st.lists(st.sampled_from(["\n", "User:", "ls", " files", "s -"]), max_size=3, unique=True),
)
def test_streamed_pieces_add_up_to_the_answer_and_hide_stop_strings(served, pieces, stops):
    tokenizer = served.encoder.tokenizer
    tokens = tokenizer("".join(pieces), add_special_tokens=False).input_ids
    job, events = run_job(served, tokens, tuple(stops))
    streamed = "".join(e.delta for e in events)
    whole = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    cuts = [whole.index(s) for s in stops if s in whole]
    expected = whole[: min(cuts)].rstrip() if cuts else whole
    assert streamed == expected
    assert not any(stop in streamed for stop in stops)
    assert [e.finish_reason for e in events].count(None) == len(events) - 1 and events[-1].finish_reason


def test_eos_and_budget_end_a_row(served):
    tokenizer = served.encoder.tokenizer
    ids = tokenizer("list the files", add_special_tokens=False).input_ids
    _, events = run_job(served, [*ids, tokenizer.eos_token_id, *ids], ())
    assert events[-1].finish_reason == "stop" and events[-1].completion_tokens == len(ids) + 1
    _, events = run_job(served, ids, (), budget=2)
    assert events[-1].finish_reason == "length" and events[-1].completion_tokens == 2


def test_streamable_holds_back_a_possible_stop_and_trailing_space():
    assert streamable("hello Us", ("User:",)) == len("hello")
    assert streamable("hello  ", ()) == len("hello")
    assert streamable("caf\ufffd", ()) == len("caf")


def test_limits_in_flight_deadline_and_empty_prompt(served):
    engine = Engine({"m": served}, ServeConfig(max_concurrent_requests=2, request_timeout_s=0.01))
    events = []
    engine.submit("m", [1, 5], Decoding(), events.append)
    engine.submit("m", [1, 6], Decoding(), events.append)
    with pytest.raises(Busy):
        engine.submit("m", [1, 7], Decoding(), events.append)
    with pytest.raises(TuneforgeError, match="empty"):
        engine.submit("m", [], Decoding(), events.append)
    import time

    time.sleep(0.05)
    assert engine._take_batch() == []  # both ran out of time while queued: finished without a prefill
    assert [e.finish_reason for e in events] == ["timeout", "timeout"]
    engine.submit("m", [1, 8], Decoding(), events.append)  # their slots are free again


class OneTokenTexts:
    """A tokenizer whose tokens are whole strings, to put two stop strings in one token."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.texts[i] for i in ids)


def test_the_earliest_stop_in_the_text_wins_not_the_first_listed():
    encoder = type("Encoder", (), {"tokenizer": OneTokenTexts(["answer ", "User:\n more"])})()
    served = Served("m", model=None, adapter=None, encoder=encoder, system_prompt=None, stop_ids=[99])
    _, events = run_job(served, [0, 1], ("\n", "User:"))
    assert "".join(e.delta for e in events) == "answer" and events[-1].finish_reason == "stop"


@pytest.fixture(scope="module")
def byte_level_served(tiny_models) -> Served:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    return Served("b", None, None, ChatEncoder(tokenizer), None, stop_ids=[tokenizer.eos_token_id])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_decoding_piece_by_piece_equals_decoding_the_whole_answer(served, byte_level_served, data):
    """Any ids (byte tokens that split a character, specials, spaces): the streamed pieces are the
    whole answer decoded at once, for a SentencePiece-style and a byte-level tokenizer."""
    for model in (served, byte_level_served):
        tokenizer = model.encoder.tokenizer
        ids = data.draw(st.lists(st.integers(0, len(tokenizer) - 1), max_size=40))
        ids = [i for i in ids if i not in model.stop_ids]
        job, events = run_job(model, ids, ())
        whole = tokenizer.decode(ids, skip_special_tokens=True).strip()
        assert "".join(e.delta for e in events) == whole


class CountingTokenizer:
    """Counts the ids every decode call is given: the work of streaming an answer."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoded = tokenizer, 0

    def decode(self, ids, skip_special_tokens=True):
        self.decoded += len(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def test_a_long_streamed_answer_decodes_each_token_a_bounded_number_of_times(byte_level_served):
    tokenizer = byte_level_served.encoder.tokenizer
    ids = tokenizer("list the files in /srv/data and count them. " * 250, add_special_tokens=False).input_ids
    ids = ids[:2000]
    counting = CountingTokenizer(tokenizer)
    encoder = type("Encoder", (), {"tokenizer": counting})()
    served = Served("c", None, None, encoder, None, stop_ids=[tokenizer.eos_token_id])
    job, events = run_job(served, ids, ("never appears",))
    assert "".join(e.delta for e in events) == tokenizer.decode(ids, skip_special_tokens=True).strip()
    # decoding the whole answer at every step would be 2000 * 2001 / 2 = 2,001,000 ids: quadratic
    assert counting.decoded <= 6 * len(ids), counting.decoded


class ByteTexts:
    """Tokens as raw bytes, decoded the way byte-level tokenizers do (a split character shows as U+FFFD)."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True):
        return b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("end", ["eos", "budget"])
def test_a_stop_in_a_piece_that_ends_in_half_a_character_is_still_cut(end):
    encoder = type("Encoder", (), {"tokenizer": ByteTexts([b"hi", b"\nUser: \xc3", b"\xa9"])})()
    served = Served("m", model=None, adapter=None, encoder=encoder, system_prompt=None, stop_ids=[99])
    tokens, budget = ([0, 1, 99], 10) if end == "eos" else ([0, 1], 2)
    _, events = run_job(served, tokens, ("\nUser:",), budget=budget)
    assert "".join(e.delta for e in events) == "hi" and events[-1].finish_reason == "stop"
