"""The held-out rows a run is scored on, and the loss on their answers.

By default the rows are the run's own eval split (`RUN_DIR/eval_split.jsonl`, written when training
started), so no row seen in training is scored. `--data FILE` scores other rows, read with the run's data
mapping. The loss is computed as training computes it: the encoder's ids and labels, cut at the run's
max_length, mean cross-entropy per answer token (and EOS).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console

from tuneforge.config.schema import DataConfig
from tuneforge.data.collate import PadCollator
from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.sources import read_jsonl
from tuneforge.errors import TuneforgeError
from tuneforge.infer.inputs import PromptRow, mapped_row, prompts_from_file
from tuneforge.progress import Phase
from tuneforge.run.directory import RunDir

SPLIT_VIEW = DataConfig(path="eval_split.jsonl", format="messages")


def heldout_rows(
    run: RunDir, data: DataConfig, data_format: str | None, data_file: Path | None
) -> list[PromptRow]:
    if data_file is not None:
        return prompts_from_file(data_file, data, data_format)
    if not run.eval_split.is_file():
        raise TuneforgeError(
            f"{run.root} has no saved eval split ({run.eval_split.name}): it was trained without held-out rows "
            "(data.eval_fraction: 0) or by an older tuneforge. Pass --data FILE."
        )
    rows = [row for row in read_jsonl(run.eval_split) if "messages" in row]
    if not rows:
        raise TuneforgeError(f"{run.eval_split}: no conversations to score (plain-text runs have loss only)")
    return [mapped_row(row, "messages", SPLIT_VIEW) for row in rows]


@torch.inference_mode()
def answer_loss(
    model: torch.nn.Module,
    encoder: ChatEncoder,
    rows: list[PromptRow],
    *,
    max_length: int,
    batch_size: int = 8,
    console: Console | None = None,
) -> dict[str, float]:
    """Mean cross-entropy over answer tokens (as trained), its perplexity, and how many tokens it covers."""
    samples = [encoder.encode_conversation(r.conversation()) for r in rows if r.reference]
    features = [{"input_ids": s.input_ids[:max_length], "labels": s.labels[:max_length]} for s in samples]
    features = [f for f in features if any(label != IGNORE for label in f["labels"])]
    if not features:
        return {}
    collate = PadCollator(encoder.tokenizer.pad_token_id)
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    with Phase(console, "held-out loss", total=len(features)) as phase:
        for start in range(0, len(features), batch_size):
            batch = {k: v.to(device) for k, v in collate(features[start : start + batch_size]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            targets = batch["labels"][:, 1:]
            nll = F.cross_entropy(
                logits[:, :-1].float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"
            )
            total += nll.item()
            tokens += int((targets != IGNORE).sum())
            phase.advance(len(batch["input_ids"]))
    loss = total / tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "answer_tokens": tokens}
