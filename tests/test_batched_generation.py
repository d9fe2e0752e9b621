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
