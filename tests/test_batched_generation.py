"""Batched greedy generation (grouped by length, left padding, KV cache) equals one-at-a-time greedy
generation, token for token, on prompts of very different lengths."""

import pytest
import torch
from conftest import needs_shared
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.data.encode import ChatEncoder
from tuneforge.data.templates import install_chat_template
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import engine_for_model

REQUESTS = [
    "count the lines in a.txt",
    "show me what is inside /var/log and then tell me which of those files changed today, in detail",
    "rm",
    "make a new folder called projects",
    "compress the folder /srv/data into backup.tar.gz and keep the original folder as it is",
    "what files are in ~?",
    "search for timeout in server.log",
]


def check(model_path, batch_size: int):
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    install_chat_template(tokenizer, "alpaca")
    encoder = ChatEncoder(tokenizer)
    prompts = [encoder.prompt_ids([{"role": "user", "content": r}]) for r in REQUESTS]
    assert len({len(p) for p in prompts}) > 3, "prompts of different lengths, so padding is exercised"
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    engine = engine_for_model(model, tokenizer)  # its pad and EOS ids are the tokenizer's, as `ids` says
    batched = engine.generate(prompts, decoding=Decoding(max_new_tokens=20), batch_size=batch_size)
    # The reference: plain transformers, one prompt at a time, in the given order.
    single = []
    for prompt in prompts:
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, **ids)
        single.append(out[0, len(prompt) :].tolist())
    assert batched == single
    assert sum(len(o) for o in single) > len(prompts), "something was generated"


@pytest.mark.parametrize("batch_size", [3, 8])
def test_batched_equals_one_at_a_time_on_a_tiny_llama(tiny_models, batch_size):
    check(tiny_models("llama"), batch_size)


def test_batched_equals_one_at_a_time_on_stories260k():
    check(needs_shared("models", "stories260K"), 4)


def test_a_seeded_row_samples_the_same_whatever_shares_its_batch(tiny_models):
    """GRPO's rollouts with --nproc 2: half a step's rows, in other batches, must sample as all of them do."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    tokenizer.pad_token = tokenizer.eos_token
    install_chat_template(tokenizer, "alpaca")
    encoder = ChatEncoder(tokenizer)
    prompts = [encoder.prompt_ids([{"role": "user", "content": r}]) for r in REQUESTS]
    model = AutoModelForCausalLM.from_pretrained(tiny_models("llama")).eval()
    engine = engine_for_model(model, tokenizer)
    decoding = Decoding(max_new_tokens=12, temperature=1.0, top_p=0.95)
    seeds = [100 + i for i in range(len(prompts))]
    together = engine.generate(prompts, decoding=decoding, batch_size=8, seeds=seeds)
    alone = [engine.generate([p], decoding=decoding, seeds=[s])[0] for p, s in zip(prompts, seeds)]
    halves = engine.generate(prompts[3:], decoding=decoding, batch_size=2, seeds=seeds[3:])
    assert together == alone and together[3:] == halves
    other = engine.generate(prompts, decoding=decoding, batch_size=8, seeds=[s + 50 for s in seeds])
    assert other != together, "the seed decides the sample"
    same_prompt = engine.generate([prompts[0]] * 4, decoding=decoding, seeds=[1, 2, 3, 4])
    assert len({tuple(ids) for ids in same_prompt}) > 1, "a random model's samples differ"


@pytest.mark.parametrize("top_p", [1.0, 0.6])
def test_the_row_sampler_draws_from_the_tempered_top_p_distribution(top_p):
    from tuneforge.infer.row_sampling import RowSeededSampler

    logits = torch.tensor([[2.0, 1.5, 1.0, -1.0]])
    draws = 4000
    sampler = RowSeededSampler(list(range(draws)), temperature=0.5, top_p=top_p)
    scores = sampler(torch.zeros((draws, 1), dtype=torch.long), logits.expand(draws, -1).clone())
    assert ((scores == 0).sum(dim=1) == 1).all() and scores.isinf().sum() == 3 * draws, (
        "one token left per row"
    )
    counts = torch.bincount(scores.argmax(dim=1), minlength=4).float() / draws
    expected = (logits[0] / 0.5).softmax(-1)
    if top_p < 1.0:  # the smallest set of most likely tokens reaching top_p: here the first alone (0.67)
        expected = torch.tensor([1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(counts, expected, atol=0.03, rtol=0)


def test_seeded_rows_ignore_the_models_repetition_penalty(tiny_models):
    """GRPO scores its samples under the tempered distribution alone; a repetition penalty (or n-gram ban)
    in the model's generation_config must not shape what is drawn."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_models("llama")).eval()
    engine = engine_for_model(model, tokenizer)
    decoding, prompts = Decoding(max_new_tokens=16, temperature=1.0), [[1, 5, 9, 4]] * 6
    plain = engine.generate(prompts, decoding=decoding, seeds=list(range(6)))
    model.generation_config.repetition_penalty, model.generation_config.no_repeat_ngram_size = 50.0, 1
    assert engine.generate(prompts, decoding=decoding, seeds=list(range(6))) == plain
