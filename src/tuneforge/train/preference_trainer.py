"""The preference Trainer: batches of encoded pairs (or KTO rows) in, a preference loss and its metrics out.

A batch is padded as SFT pads (data/collate.py), chosen rows first, then rejected, so one forward pass
scores both branches. The reference log-probs are computed once before the first step, by the starting
model itself (`reference_logps`): the LoRA adapter before any update (B = 0, the base) or the SFT run's
adapter (model.adapter). So the reference is exactly the frozen starting model, and it needs no second
copy of the model in memory and no adapter switching during training.

Logged at every logging step and evaluation (eval_ prefix): rewards/chosen, rewards/rejected,
rewards/margins, rewards/accuracies, logps/chosen, logps/rejected (kto: kl, the reference point z).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from tuneforge.data.collate import PadCollator
from tuneforge.model.load import process_device
from tuneforge.run.processes import gather_shares, my_share
from tuneforge.train.preference_loss import SequenceLogps, kto_loss, pair_loss, sequence_logps
from tuneforge.train.trainer import SftTrainer, add_gathered

REFERENCE_FREE = ("simpo", "orpo")


def branch_names(dataset: Dataset) -> tuple[str, ...]:
    return ("chosen", "rejected") if "chosen_input_ids" in dataset.column_names else ("completion",)


@dataclass
class PreferenceCollator:
    """Rows of branches -> one padded batch of every branch (chosen rows, then rejected rows)."""

    pad: PadCollator
    branches: tuple[str, ...]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        sequences = [
            {"input_ids": row[f"{name}_input_ids"], "labels": row[f"{name}_labels"]}
            for name in self.branches
            for row in rows
        ]
        batch = self.pad(sequences)
        if "reference" in rows[0]:
            batch["reference"] = torch.tensor(
                [row["reference"][i] for i in range(len(self.branches)) for row in rows], dtype=torch.float32
            )
        if "desirable" in rows[0]:
            batch["desirable"] = torch.tensor([row["desirable"] for row in rows], dtype=torch.bool)
        return batch


@torch.no_grad()
def reference_logps(
    model, dataset: Dataset, collator: PreferenceCollator, batch_size: int, selective: bool = True
) -> list[list[float]]:
    """Per row, the summed answer log-probs of each branch under the model as it is now (eval mode: no
    dropout). Each process scores its share of the rows; all get every row back in order."""
    was_training = model.training
    model.eval()
    device = process_device()
    if (
        next(model.parameters()).device != device
    ):  # unquantized weights load on the CPU; the Trainer moves them later
        model.to(device)
    share = my_share(list(range(len(dataset))))
    loader = DataLoader(dataset.select(share), batch_size=batch_size, collate_fn=collator)
    rows: list[list[float]] = []
    for batch in loader:
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "labels")}
        total = sequence_logps(model, **inputs, selective=selective).total.cpu().tolist()
        n = len(total) // len(collator.branches)
        rows += [[total[b * n + i] for b in range(len(collator.branches))] for i in range(n)]
    model.train(was_training)
    return gather_shares(rows, len(dataset))


class PreferenceTrainer(SftTrainer):
    method = "dpo"
    beta = 0.1
    simpo_gamma = 0.5
    kto_weights = (1.0, 1.0)

    loss_per_answer_token = False  # the loss is one number per pair (or KTO row), averaged over rows

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The loss is a mean over pairs, not a sum over tokens: let the Trainer divide by accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.stats: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logps = sequence_logps(
            model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], self.selective
        )
        reference = inputs.get("reference")
        if self.method == "kto":
            result, z = kto_loss(logps, reference, inputs["desirable"], self.beta, *self.kto_weights)
            found = {"kl": [z.item()]}
            chosen_logps = logps.total[inputs["desirable"]].detach()
            rejected_logps = logps.total[~inputs["desirable"]].detach()
        else:
            n = len(logps.total) // 2
            chosen, rejected = (
                SequenceLogps(logps.total[s], logps.tokens[s]) for s in (slice(0, n), slice(n, None))
            )
            refs = (None, None) if reference is None else (reference[:n], reference[n:])
            result = pair_loss(self.method, chosen, rejected, *refs, self.beta, self.simpo_gamma)
            margins = result.chosen_rewards - result.rejected_rewards
            found = {
                "rewards/margins": margins.tolist(),
                "rewards/accuracies": (margins > 0).float().tolist(),
            }
            chosen_logps, rejected_logps = chosen.total.detach(), rejected.total.detach()
        found |= {
            "rewards/chosen": result.chosen_rewards.tolist(),
            "rewards/rejected": result.rejected_rewards.tolist(),
            "logps/chosen": chosen_logps.tolist(),
            "logps/rejected": rejected_logps.tolist(),
        }
        split = self.stats["train" if model.training else "eval"]
        for key, values in found.items():
            split[key] += values
        return (result.loss, {"loss": result.loss}) if return_outputs else result.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the metrics gathered since the last log: means over every row of every process."""
        add_gathered(logs, self.stats, self.accelerator)
        super().log(logs, start_time)
