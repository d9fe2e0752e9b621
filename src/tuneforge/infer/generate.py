"""Batched greedy generation from a loaded run. Prompts are built by the data stage's encoder
(`ChatEncoder.prompt_ids`), the same code that built the training samples.

    texts = generate(loaded, [[{"role": "user", "content": "count the lines in notes.txt"}]])
"""

from __future__ import annotations

import torch

from tuneforge.data.shapes import Message
from tuneforge.infer.load import LoadedRun


def generate(
    loaded: LoadedRun, conversations: list[list[Message]], *, max_new_tokens: int = 128, batch_size: int = 8
) -> list[str]:
    """The assistant's next turn for each conversation."""
    prompts = [loaded.encoder.prompt_ids(messages) for messages in conversations]
    tokenizer = loaded.tokenizer
    outputs = generate_ids(
        loaded.model,
        prompts,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outputs]


@torch.inference_mode()
def generate_ids(
    model: torch.nn.Module,
    prompts: list[list[int]],
    *,
    pad_token_id: int,
    eos_token_id: int,
    max_new_tokens: int,
    batch_size: int,
) -> list[list[int]]:
    """The new ids after each prompt, greedy, in batches padded on the left so every prompt ends where
    generation starts."""
    device = next(model.parameters()).device
    outputs: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        longest = max(len(ids) for ids in batch)
        input_ids = torch.tensor(
            [[pad_token_id] * (longest - len(ids)) + ids for ids in batch], device=device
        )
        attention = torch.tensor(
            [[0] * (longest - len(ids)) + [1] * len(ids) for ids in batch], device=device
        )
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
        outputs += [row.tolist() for row in generated[:, longest:]]
    return outputs


def exact_match(predictions: list[str], references: list[str]) -> float:
    pairs = list(zip(predictions, references))
    return sum(p.strip() == r.strip() for p, r in pairs) / max(len(pairs), 1)
