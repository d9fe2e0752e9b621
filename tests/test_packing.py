"""Padding-free packing keeps samples apart: no sample's logits depend on its neighbours, and the loss of
a packed batch equals the loss of the same samples padded."""

import torch
from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

from tuneforge.batching import PadCollator
from tuneforge.config import ModelConfig
from tuneforge.modeling import load_tokenizer
from tuneforge.templates import install_chat_template
from tuneforge.tokenization import Encoder, build_sample


def samples(tokenizer, answers):
    install_chat_template(tokenizer, "alpaca")
    encoder = Encoder(tokenizer)
    return [
        build_sample(
            encoder, [{"role": "user", "content": f"request {i}"}, {"role": "assistant", "content": a}]
        )
        for i, a in enumerate(answers)
    ]


def test_changing_one_packed_sample_leaves_the_others_unchanged(tiny_models):
    path = tiny_models("llama")
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(path)))
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    pack = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    first = samples(tokenizer, ["ls -la /tmp", "wc -l a.txt", "rm b.txt"])
    second = samples(tokenizer, ["ls -la /tmp", "grep -n 'x' some/other/longer/file.txt", "rm b.txt"])
    with torch.no_grad():
        a = model(**pack(first), use_cache=False).logits[0]
        b = model(**pack(second), use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([first[2]["input_ids"]]), use_cache=False).logits[0]
    n0, n2 = len(first[0]["input_ids"]), len(first[2]["input_ids"])
    assert torch.allclose(a[:n0], b[:n0], atol=1e-5)
    assert torch.allclose(a[-n2:], b[-n2:], atol=1e-5), "the last sample must not see the changed middle one"
    assert torch.allclose(a[-n2:], alone, atol=1e-5), "packed logits equal the sample's logits on its own"


def test_packed_loss_equals_padded_loss(tiny_models):
    path = tiny_models("llama")
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(path)))
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    batch = samples(tokenizer, ["ls -la /tmp", "grep -n 'timeout' server.log", "rm b.txt"])
    packed = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)(batch)
    padded = PadCollator(tokenizer.pad_token_id)(batch)
    with torch.no_grad():
        packed_loss = model(**packed, use_cache=False).loss
        padded_loss = model(**padded, use_cache=False).loss
    assert torch.allclose(packed_loss, padded_loss, atol=1e-5)
