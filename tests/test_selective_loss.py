"""The selective, chunked loss path equals the reference path (full logits + the model's own masked
cross-entropy): the same loss and the same gradient for every trainable tensor, within 1e-5 in float32,
on a real pretrained model and a real GPT-2 vocabulary, for completion-only and all-token training, a
trainable head, packing, and chunks smaller than the batch."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_shared
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorWithFlattening

from tuneforge.data.collate import PadCollator
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.sources import read_jsonl
from tuneforge.data.templates import install_chat_template
from tuneforge.train.selective_loss import selective_loss, supports_selective_loss

MODELS = {"stories260K": ("models", "stories260K"), "gpt2-tokenizer": ("models", "gpt2-tokenizer-random")}


def batch_and_model(name: str, train_on: str, head: str, packing: bool):
    folder = needs_shared(*MODELS[name])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    install_chat_template(tokenizer, "alpaca")
    encoder = ChatEncoder(tokenizer)
    rows = read_jsonl(needs_shared("data", "dolly", "dolly.jsonl"))[:6]
    samples = [
        encoder.encode_conversation(
            [
                {"role": "user", "content": r["prompt"][:300]},
                {"role": "assistant", "content": r["answer"][:300]},
            ],
            train_on=train_on,
        )
        for r in rows
    ]
    features = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
    if packing:
        batch = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)(features)
    else:
        batch = PadCollator(tokenizer.pad_token_id)(features)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    targets = ["c_attn", "c_proj"] if model.config.model_type == "gpt2" else ["q_proj", "v_proj", "down_proj"]
    save = ["lm_head"] if head == "trainable" else None
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=save))
    for module in model.modules():  # B starts at zero: give it values so gradients reach A too
        if hasattr(module, "lora_B"):
            for weight in module.lora_B.values():
                torch.nn.init.normal_(weight.weight, std=0.02)
    return model, dict(batch)


def loss_and_grads(model, loss_fn):
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(
    ("train_on", "head", "packing", "chunk"),
    [
        ("completion", "frozen", False, 1024),
        ("all", "frozen", False, 1024),
        ("completion", "trainable", False, 1024),
        ("completion", "frozen", True, 1024),
        ("completion", "frozen", False, 7),
    ],
)
def test_selective_loss_equals_the_reference(name, train_on, head, packing, chunk):
    model, batch = batch_and_model(name, train_on, head, packing)
    assert supports_selective_loss(model)
    labels = batch.pop("labels")
    items = int((torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:] != -100).sum())
    for divisor in (None, items + 3):  # the Trainer's num_items_in_batch, or a plain mean
        extra = {} if divisor is None else {"num_items_in_batch": divisor}
        reference, reference_grads = loss_and_grads(
            model, lambda extra=extra: model(**batch, labels=labels, **extra).loss
        )
        loss, grads = loss_and_grads(
            model, lambda divisor=divisor: selective_loss(model, batch, labels, divisor, chunk_tokens=chunk)
        )
        assert abs(loss.item() - reference.item()) <= 1e-5
        assert grads.keys() == reference_grads.keys() and grads
        for key, grad in grads.items():
            assert torch.allclose(grad, reference_grads[key], atol=1e-5, rtol=1e-4), key
