"""Facts about a model's output head that the selective loss (train/selective_loss.py) and the memory
planner (model/plan.py) share: which families have a plain linear head after their decoder, and how many
positions go through the head at once."""

from __future__ import annotations

# Families whose logits are exactly `lm_head(decoder(...).last_hidden_state)`: no soft-capping or scaling.
PLAIN_HEAD_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gpt2"})
# Trained positions per head chunk: 1024 x 128k vocabulary x 4 bytes = 0.5 GB of logits at most.
HEAD_CHUNK_TOKENS = 1024


def has_plain_head(hf_config) -> bool:
    return getattr(hf_config, "model_type", None) in PLAIN_HEAD_FAMILIES
