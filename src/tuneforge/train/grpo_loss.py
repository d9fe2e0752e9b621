"""The GRPO loss (issue 22), as pure tensor functions: group-relative advantages and the clipped policy loss.

The computation is TRL 1.16's GRPOTrainer (`_generate_and_score_completions` for the advantages,
`_compute_loss` for the loss) restricted to what tuneforge uses: token-level importance sampling, no vLLM,
no entropy mask or bonus, no off-policy mask, no `delta` clamp, no KL bias correction. tests/test_grpo_loss.py
calls TRL's own methods on the same tensors and asserts equal losses, gradients and clip fractions.

    advantages = group_advantages(rewards, group_size=8, scale="group")  # rewards of the whole step, all processes
    parts = grpo_loss(logps, None, ref_logps, advantages[rows], mask, loss_type="dapo", epsilon_low=0.2,
                      epsilon_high=0.28, beta=0.04, max_completion_tokens=256, tokens_in_batch=n, micro_batches=4)
    parts.loss.backward()

Normalisers, for an optimizer step of `micro_batches` micro-batches on each of P processes:
  grpo     per-sequence mean over its masked tokens, mean over the B rows, / micro_batches
  dr_grpo  sum over masked tokens / (B * max_completion_tokens), / micro_batches
  dapo     sum over masked tokens / tokens_in_batch
TRL's dapo divides by num_items_in_batch / P * G / S, where num_items_in_batch counts the masked tokens of the
whole generation batch over all processes (S = steps_per_generation micro-batches each) and G is the gradient
accumulation. When S == G (TRL's default) that is the step's masked tokens over all processes, divided by P.
The / P is there because DDP averages (not sums) gradients over processes: the effective gradient is then the
token sum of the whole step over its token count. So, to equal TRL, pass
    tokens_in_batch = (masked tokens of the optimizer step, all micro-batches, all processes) / P
which for one process is just the step's masked tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALES = ("group", "batch", "none")
STD_EPSILON = 1e-4  # TRL's: keeps a group whose rewards are all equal at advantage 0 instead of 0/0


def _nanstd(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Standard deviation along dim with Bessel's correction, ignoring NaN (TRL's trainer.utils.nanstd):
    NaN where fewer than two values are present."""
    mean = torch.nanmean(values, dim=dim, keepdim=True)
    variance = torch.nanmean((values - mean) ** 2, dim=dim)
    count = (~torch.isnan(values)).sum(dim=dim)
    correction = torch.where(count > 1, count / (count - 1), torch.full_like(variance, float("nan")))
    return torch.sqrt(variance * correction)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """rewards (N,) laid out group after group (N = prompts * group_size) -> advantages (N,), as TRL.

    Each reward minus its group's mean; scale "group" divides by the group's std, "batch" by the std of all
    N rewards, "none" by nothing (Dr. GRPO); std + 1e-4 in both cases. A NaN reward (unscorable completion)
    is left out of its group's statistics and gets advantage 0. Call it on the rewards of every completion of
    the generation batch (all processes), before slicing out this process's rows, since TRL does so too.

        group_advantages(torch.tensor([1.0, 0.0, 5.0, 5.0]), group_size=2, scale="group")  # [0.71, -0.71, 0, 0]
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if rewards.dim() != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards {tuple(rewards.shape)} do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)
    centred = rewards - torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    if scale == "none":
        return torch.nan_to_num(centred, nan=0.0)
    if scale == "group" and group_size > 1:
        std = _nanstd(grouped, dim=1).repeat_interleave(group_size)
    elif scale == "batch" and rewards.numel() > 1:
        std = _nanstd(rewards, dim=0).expand_as(rewards)
    else:  # a single value has no spread (TRL: eval with one generation): the advantage is 0 anyway
        std = torch.zeros_like(rewards)
    centred = centred / (std + STD_EPSILON)
    return torch.nan_to_num(centred, nan=0.0)


@dataclass
class LossParts:
    loss: torch.Tensor  # scalar to backward (already normalised for this micro-batch's share)
    kl: torch.Tensor | None  # mean per-token KL over masked tokens (None when beta == 0)
    clip_low: torch.Tensor  # fraction of masked tokens clipped below (ratio < 1-eps_low and advantage < 0)
    clip_high: torch.Tensor  # fraction clipped above (ratio > 1+eps_high and advantage > 0)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values over the masked tokens of the whole micro-batch, detached; 0 when none is masked."""
    return ((values * mask).sum() / mask.sum().clamp(min=1.0)).detach()


def _normalise(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    micro_batches: int,
    max_completion_tokens: int,
    tokens_in_batch: float,
) -> torch.Tensor:
    """The loss_type's reduction of the (B, T) per-token loss to the scalar TRL backwards (see module doc)."""
    masked = per_token_loss * mask
    if loss_type == "grpo":
        # a fully masked (truncated) row counts in the batch mean with 0, as in TRL
        per_sequence = masked.sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_sequence.mean() / micro_batches
    if loss_type == "dr_grpo":
        return masked.sum() / (per_token_loss.size(0) * max_completion_tokens) / micro_batches
    # dapo. A step of only truncated completions has no tokens and a zero sum: 0, not 0/0 (TRL clamps its
    # count at 1 before dividing by processes, so a positive count below 1 is kept as it is)
    return masked.sum() / (tokens_in_batch if tokens_in_batch > 0 else 1.0)


def _check(
    loss_type: str, beta: float, ref_logps: torch.Tensor | None, logps: torch.Tensor, mask: torch.Tensor
) -> None:
    """Refuse a loss type tuneforge does not offer, a KL term without reference and mismatched shapes."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta != 0.0 and ref_logps is None:
        raise ValueError("beta > 0 needs ref_logps, the reference model's per-token log-probs")
    if logps.dim() != 2 or mask.shape != logps.shape:
        raise ValueError(f"logps {tuple(logps.shape)} and mask {tuple(mask.shape)} must both be (B, T)")


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str,
    epsilon_low: float,
    epsilon_high: float,
    beta: float,
    max_completion_tokens: int,
    tokens_in_batch: float,
    micro_batches: int,
) -> LossParts:
    """The GRPO loss of one micro-batch of B completions, T tokens each, as TRL's `_compute_loss`.

    logps (B, T) carry the gradient; old_logps (B, T) are those at generation time, None meaning this is the
    one pass over the generation batch (ratio 1, logps.detach()); ref_logps (B, T) the reference model's,
    needed when beta > 0; advantages (B,) from group_advantages; mask (B, T) 1 on completion tokens that count.
    Per token: ratio r = exp(logps - old), loss -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A)
    + beta * (exp(ref - logps) - (ref - logps) - 1), then the loss_type's normaliser (module doc).
    """
    _check(loss_type, beta, ref_logps, logps, mask)
    mask = mask.to(logps.dtype)
    old_logps = logps.detach() if old_logps is None else old_logps
    advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss = -torch.min(ratio * advantages, clipped * advantages)
    kl = None
    if beta != 0.0:
        gap = ref_logps - logps
        per_token_kl = torch.exp(gap) - gap - 1  # k3: unbiased, always >= 0
        per_token_loss = per_token_loss + beta * per_token_kl
        kl = _masked_mean(per_token_kl, mask)
    loss = _normalise(per_token_loss, mask, loss_type, micro_batches, max_completion_tokens, tokens_in_batch)
    # clipping only matters where it removes the gradient: below for A < 0, above for A > 0 (TRL's metrics)
    low = (ratio < 1 - epsilon_low) & (advantages < 0)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)
    return LossParts(
        loss, kl, _masked_mean(low.to(mask.dtype), mask), _masked_mean(high.to(mask.dtype), mask)
    )
