"""Inference from a run directory: the base model plus the run's adapter, prompted through the same
chat template and the same id-building code as training (tokenization.inference_prompt_ids).

    tuneforge generate runs/quickstart --prompt "count the lines in notes.txt"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.config import RunConfig
from tuneforge.config_loading import load_config
from tuneforge.errors import TuneforgeError
from tuneforge.modeling import load_base_model
from tuneforge.run_dir import RunDir
from tuneforge.tokenization import Encoder, inference_prompt_ids


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: object
    config: RunConfig


def load_run(run_dir: str | Path, *, base_only: bool = False) -> LoadedRun:
    run = RunDir(Path(run_dir))
    if not run.config.is_file() or not run.adapter.is_dir():
        raise TuneforgeError(f"{run.root} is not a finished tuneforge run (needs config.yaml and adapter/)")
    config = load_config(run.config)
    tokenizer = AutoTokenizer.from_pretrained(run.adapter)  # holds the chat template training used
    if config.lora.method == "full" and not base_only:
        model = AutoModelForCausalLM.from_pretrained(run.adapter)
    else:
        model, _ = load_base_model(config.model, config.quant)
        if not base_only:
            model = PeftModel.from_pretrained(model, run.adapter)
    model.eval()
    return LoadedRun(model, tokenizer, config)


@torch.inference_mode()
def generate(
    loaded: LoadedRun, prompts: list[str], *, max_new_tokens: int = 128, batch_size: int = 8
) -> list[str]:
    tokenizer, model = loaded.tokenizer, loaded.model
    encoder = Encoder(tokenizer)
    system = loaded.config.data.system_prompt
    prefix = [{"role": "system", "content": system}] if system else []
    outputs: list[str] = []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        batch = [
            inference_prompt_ids(encoder, [*prefix, {"role": "user", "content": p}])
            for p in prompts[start : start + batch_size]
        ]
        longest = max(len(ids) for ids in batch)
        # Left padding so every prompt ends where generation starts.
        input_ids = torch.tensor(
            [[tokenizer.pad_token_id] * (longest - len(ids)) + ids for ids in batch], device=device
        )
        attention = torch.tensor(
            [[0] * (longest - len(ids)) + [1] * len(ids) for ids in batch], device=device
        )
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        for row in generated[:, longest:]:
            outputs.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return outputs


def exact_match(predictions: list[str], references: list[str]) -> float:
    pairs = list(zip(predictions, references))
    return sum(p.strip() == r.strip() for p, r in pairs) / max(len(pairs), 1)
