"""The SimPO and ORPO losses equal TRL's own (CPOTrainer.cpo_loss with loss_type=simpo, ORPOTrainer.
odds_ratio_loss), called with the same log-probs; DPO's and KTO's follow their papers' definitions."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the two trainers live under trl.experimental

from trl.experimental.cpo.cpo_trainer import CPOTrainer  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402

from tuneforge.train.preference_loss import SequenceLogps, kto_loss, pair_loss, sequence_logps


def random_logps(seed: int, n: int = 6) -> tuple[SequenceLogps, SequenceLogps]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 30, (2, n), generator=generator)
    per_token = -torch.rand((2, n), generator=generator, dtype=torch.float64) * 3 - 1e-3
    return SequenceLogps(per_token[0] * tokens[0], tokens[0]), SequenceLogps(
        per_token[1] * tokens[1], tokens[1]
    )


def trl_self(**fields) -> SimpleNamespace:
    return SimpleNamespace(
        alpha=0.0, label_smoothing=0.0, accelerator=SimpleNamespace(device="cpu"), **fields
    )


@pytest.mark.parametrize("seed", range(5))
def test_simpo_equals_trl(seed):
    chosen, rejected = random_logps(seed)
    ours = pair_loss("simpo", chosen, rejected, None, None, beta=2.0, simpo_gamma=0.5)
    losses, chosen_rewards, rejected_rewards = CPOTrainer.cpo_loss(
        trl_self(loss_type="simpo", beta=2.0, simpo_gamma=0.5), chosen.mean, rejected.mean
    )
    torch.testing.assert_close(ours.loss, losses.mean())
    torch.testing.assert_close(ours.chosen_rewards, chosen_rewards)
    torch.testing.assert_close(ours.rejected_rewards, rejected_rewards)


@pytest.mark.parametrize("seed", range(5))
def test_orpo_equals_trl(seed):
    chosen, rejected = random_logps(seed)
    ours = pair_loss("orpo", chosen, rejected, None, None, beta=0.1)
    ratio_losses, *_ = ORPOTrainer.odds_ratio_loss(trl_self(beta=0.1), chosen.mean, rejected.mean)
    nll = -chosen.total.sum() / chosen.tokens.sum()
    torch.testing.assert_close(ours.loss, (nll - ratio_losses.mean()).to(ours.loss.dtype))


def test_dpo_is_the_papers_sigmoid_loss_and_zero_rewards_at_the_reference():
    chosen, rejected = random_logps(7)
    ref_chosen, ref_rejected = chosen.total + 0.3, rejected.total - 0.2
    ours = pair_loss("dpo", chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    logits = 0.1 * ((chosen.total - ref_chosen) - (rejected.total - ref_rejected))
    torch.testing.assert_close(ours.loss, -F.logsigmoid(logits).mean())
    at_reference = pair_loss("dpo", chosen, rejected, chosen.total, rejected.total, beta=0.1)
    assert at_reference.loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert at_reference.chosen_rewards.abs().max() == 0


def test_kto_rewards_desirable_rows_above_the_reference_point():
    policy = SequenceLogps(torch.tensor([-1.0, -5.0, -2.0, -2.0]), torch.tensor([3, 3, 3, 3]))
    reference = torch.tensor([-2.0, -4.0, -2.0, -2.0])
    desirable = torch.tensor([True, False, True, False])
    result, z = kto_loss(policy, reference, desirable, beta=0.5, desirable_weight=1.0, undesirable_weight=1.0)
    assert z.item() == 0.0  # mean reward (1 - 1 + 0 + 0) / 4, clamped at 0
    expected = torch.stack(
        [
            1 - torch.sigmoid(torch.tensor(0.5)),
            1 - torch.sigmoid(torch.tensor(0.5)),
            *[1 - torch.sigmoid(torch.tensor(0.0))] * 2,
        ]
    ).mean()
    torch.testing.assert_close(result.loss, expected)
    assert result.chosen_rewards.tolist() == [0.5, 0.0] and result.rejected_rewards.tolist() == [-0.5, 0.0]


def test_selective_log_probs_and_gradients_equal_the_full_logits_path(tiny_models):
    """The head on answer positions only (frozen head: the fused per-position path) against the model's
    full logits, for values and for the LoRA gradients of a DPO-like weighted sum."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_models("llama"), dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    input_ids = torch.randint(3, 500, (4, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 9:] = 0
    labels = input_ids.clone()
    labels[:, :5] = -100
    labels[2, 9:] = -100
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])
    results = []
    for selective in (True, False):
        model.zero_grad()
        logps = sequence_logps(model, input_ids, attention_mask, labels, selective=selective)
        (logps.total * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((logps, grads))
    (fast, fast_grads), (full, full_grads) = results
    torch.testing.assert_close(fast.total, full.total, atol=1e-5, rtol=1e-5)
    assert fast.tokens.tolist() == full.tokens.tolist() == [7, 7, 4, 7]
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], atol=1e-5, rtol=1e-4)
