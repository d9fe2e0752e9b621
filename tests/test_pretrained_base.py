"""With a real pretrained base (../shared/models/stories260K: no pad token, no chat template), LoRA on a real
CSV lowers held-out loss below the base's, and the adapter reloaded from disk gives the same logits."""

import pytest
import torch
from conftest import needs_shared, quick_config
from transformers import TrainerCallback

from tuneforge.infer.load import load_run
from tuneforge.train.run import run_finetune

PROBE = "### Instruction:\nWhat are the symptoms of Asthma?\n\n### Response:\n"


class CaptureLogits(TrainerCallback):
    """Logits of the in-memory model at the end of training, before anything is saved."""

    def __init__(self, tokenizer_ids):
        self.ids = tokenizer_ids
        self.logits = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        model.eval()
        with torch.no_grad():
            self.logits = model(input_ids=self.ids.to(next(model.parameters()).device)).logits.cpu()


@pytest.mark.slow
def test_lora_beats_the_pretrained_base_and_reloads_exactly(tmp_path):
    base = needs_shared("models", "stories260K")
    csv = needs_shared("data", "diseases_symptoms", "Diseases_Symptoms.csv")
    config = quick_config(
        base,
        csv,
        data={
            "eval_path": None,
            "eval_fraction": 0.1,
            "format": "prompt_completion",
            "prompt_format": "What are the symptoms of {Name}?",
            "columns": {"completion": "Symptoms"},
            "template": "alpaca",
        },
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
        train={
            "max_steps": None,
            "epochs": 3,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "max_length": 256,
            "eval_steps": 50,
            "save_steps": 1000,
            "logging_steps": 10,
        },
    )
    from transformers import AutoTokenizer

    probe_ids = torch.tensor([AutoTokenizer.from_pretrained(base)(PROBE).input_ids])
    capture = CaptureLogits(probe_ids)
    result = run_finetune(config, tmp_path / "stories", extra_callbacks=[capture])

    before, after = result.eval_before["eval_loss"], result.eval_after["eval_loss"]
    print(f"\nstories260K on Diseases_Symptoms.csv: held-out loss base {before:.4f} -> LoRA {after:.4f}")
    assert after < before * 0.9, "fine-tuning must clearly lower held-out loss"

    reloaded = load_run(result.run_dir)
    with torch.no_grad():
        logits = reloaded.model(input_ids=probe_ids).logits
    assert torch.allclose(logits, capture.logits, atol=1e-5), (logits - capture.logits).abs().max()


@pytest.mark.slow
def test_multi_turn_conversations_train_on_stories260k(tmp_path):
    """Before the one encoder, multi-turn data on stories260K failed prompt_match and could not be trained."""
    import csv

    from conftest import write_jsonl

    base = needs_shared("models", "stories260K")
    with needs_shared("data", "diseases_symptoms", "Diseases_Symptoms.csv").open() as handle:
        diseases = list(csv.DictReader(handle))
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You answer medical questions briefly."},
                {"role": "user", "content": f"What are the symptoms of {a['Name']}?"},
                {"role": "assistant", "content": a["Symptoms"]},
                {"role": "user", "content": f"And of {b['Name']}?"},
                {"role": "assistant", "content": b["Symptoms"]},
            ]
        }
        for a, b in zip(diseases[0::2], diseases[1::2])
    ]
    config = quick_config(
        base,
        write_jsonl(tmp_path / "chat.jsonl", rows),
        data={"eval_path": None, "eval_fraction": 0.1, "template": "chatml"},
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
        train={
            "max_steps": 40,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "max_length": "auto",
            "eval_steps": 40,
        },
    )
    result = run_finetune(config, tmp_path / "chat")  # preflight (prompt_match, answer_tokens) must pass
    before, after = result.eval_before["eval_loss"], result.eval_after["eval_loss"]
    print(f"\nstories260K multi-turn: held-out loss base {before:.4f} -> LoRA {after:.4f}")
    assert after < before * 0.9
