"""Padding-free packing keeps samples apart: no sample's logits depend on its neighbours, the loss of a
packed batch equals the loss of the same samples padded, and `run_finetune` with packing on trains on packed
batches to the same losses as the padded reference run."""

import pytest
import torch
from conftest import quick_config
from transformers import AutoModelForCausalLM, DataCollatorWithFlattening, TrainerCallback

from tuneforge.config.schema import ModelConfig
from tuneforge.data.collate import PadCollator
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.templates import install_chat_template
from tuneforge.model.load import load_tokenizer
from tuneforge.train.run import run_finetune


def samples(tokenizer, answers):
    install_chat_template(tokenizer, "alpaca")
    encoder = ChatEncoder(tokenizer)
    encoded = [
        encoder.encode_conversation(
            [{"role": "user", "content": f"request {i}"}, {"role": "assistant", "content": a}]
        )
        for i, a in enumerate(answers)
    ]
    return [{"input_ids": s.input_ids, "labels": s.labels} for s in encoded]


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


class RecordLosses(TrainerCallback):
    def __init__(self):
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def test_run_finetune_with_packing_trains_on_packed_batches_to_the_padded_losses(
    tiny_models, demo_files, tmp_path, monkeypatch
):
    packed_batches = []
    original = DataCollatorWithFlattening.__call__

    def spy(self, features, *args, **kwargs):
        batch = original(self, features, *args, **kwargs)
        packed_batches.append((tuple(batch["input_ids"].shape), len(features)))
        return batch

    monkeypatch.setattr(DataCollatorWithFlattening, "__call__", spy)
    losses = {}
    for packing in ("off", "on"):
        train = {"packing": packing, "max_steps": 3, "eval_before_training": False}
        recorder = RecordLosses()
        run_finetune(
            quick_config(tiny_models("llama"), *demo_files, train=train),
            tmp_path / packing,
            extra_callbacks=[recorder],
        )
        losses[packing] = recorder.losses
        if packing == "off":
            assert not packed_batches, "the padded reference run uses the padding collator"
    assert packed_batches and all(shape[0] == 1 and n == 4 for shape, n in packed_batches), (
        "training batches are one packed row holding all four samples"
    )
    assert len(losses["on"]) >= 3
    assert losses["on"] == pytest.approx(losses["off"], rel=1e-4), "same seed, same samples: same losses"
