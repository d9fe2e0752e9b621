"""The preference losses, on summed log-probs of each sequence's trained (answer) tokens.

dpo    (Rafailov et al. 2023): -log σ(β·[(π_c − ref_c) − (π_r − ref_r)]); rewards β·(π − ref).
simpo  (Meng et al. 2024):     -log σ(β·(π̄_c − π̄_r) − γ), π̄ = mean log-prob per answer token; no reference.
orpo   (Hong et al. 2024):     NLL(chosen) − β·log σ(log odds(π̄_c) − log odds(π̄_r)); no reference.
kto    (Ethayarajh et al. 2024): desirable 1 − σ(β·(r − z)), undesirable 1 − σ(β·(z − r)), r = π − ref,
       z = the batch's mean reward, detached and at least 0. The paper estimates z from mismatched
       prompt/answer pairs; the batch mean of the rows themselves stands in for it here.

The formulas are TRL's (DPOTrainer, CPOTrainer with loss_type=simpo, ORPOTrainer, KTOTrainer), which keeps
them inside its trainers; tuneforge computes them on its own encoded batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tuneforge.data.encode import IGNORE
from tuneforge.train.selective_loss import supports_selective_loss, trained_token_losses


@dataclass
class SequenceLogps:
    total: torch.Tensor  # [N] summed log-prob of the trained tokens of each sequence
    tokens: torch.Tensor  # [N] trained tokens per sequence

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.tokens.clamp(min=1)


def sequence_logps(model, input_ids, attention_mask, labels, selective: bool = True) -> SequenceLogps:
    """Summed log-probs of each sequence's trained tokens. selective: the head runs on trained positions
    only, in chunks (train/selective_loss.py), so no [tokens, vocab] logits exist; else the model's full
    logits (the reference path, and the one for sharded weights and heads that are not plain)."""
    rows = input_ids.shape[0]
    if selective and supports_selective_loss(model):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        losses, owner = trained_token_losses(model, inputs, labels)
        total = losses.new_zeros(rows).index_add(0, owner, -losses)
        return SequenceLogps(total, torch.bincount(owner, minlength=rows))
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
    targets = labels[:, 1:]
    trained = targets != IGNORE
    picked = torch.gather(logits.float().log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return SequenceLogps((picked * trained).sum(-1), trained.sum(-1))


@dataclass
class PreferenceLoss:
    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def pair_loss(
    method: str,
    chosen: SequenceLogps,
    rejected: SequenceLogps,
    ref_chosen: torch.Tensor | None,
    ref_rejected: torch.Tensor | None,
    beta: float,
    simpo_gamma: float = 0.0,
) -> PreferenceLoss:
    if method == "dpo":
        chosen_rewards = beta * (chosen.total - ref_chosen)
        rejected_rewards = beta * (rejected.total - ref_rejected)
        loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    elif method == "simpo":
        chosen_rewards, rejected_rewards = beta * chosen.mean, beta * rejected.mean
        loss = -F.logsigmoid(chosen_rewards - rejected_rewards - simpo_gamma).mean()
    elif method == "orpo":
        log_odds = (chosen.mean - rejected.mean) - (
            torch.log1p(-torch.exp(chosen.mean)) - torch.log1p(-torch.exp(rejected.mean))
        )
        nll = -chosen.total.sum() / chosen.tokens.sum().clamp(min=1)
        loss = nll - beta * F.logsigmoid(log_odds).mean()
        chosen_rewards, rejected_rewards = beta * chosen.mean, beta * rejected.mean
    else:
        raise ValueError(f"not a pair method: {method}")
    return PreferenceLoss(loss, chosen_rewards.detach(), rejected_rewards.detach())


def kto_loss(
    policy: SequenceLogps,
    reference: torch.Tensor,
    desirable: torch.Tensor,
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
) -> tuple[PreferenceLoss, torch.Tensor]:
    """The loss, the rewards of the desirable and undesirable rows, and the reference point z."""
    rewards = policy.total - reference
    z = rewards.detach().mean().clamp(min=0)
    losses = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (rewards - z))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z - rewards))),
    )
    scaled = (beta * rewards).detach()
    return PreferenceLoss(losses.mean(), scaled[desirable], scaled[~desirable]), z
