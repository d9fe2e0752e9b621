"""The GRPO loss and advantages equal TRL's own GRPOTrainer computation on the same tensors.

TRL keeps both inside its trainer, so its methods are called with a stand-in `self`: `_compute_loss` with a
`_get_per_token_logps_and_entropies` that returns fixed log-probs (a leaf tensor, so d loss / d logps, what
flows on to the LoRA weights, can be compared), and `_generate_and_score_completions` with a `_generate` and
`_calculate_rewards` that return fixed completions and rewards.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl.trainer.grpo_trainer import GRPOTrainer

from tuneforge.train.grpo_loss import LOSS_TYPES, SCALES, group_advantages, grpo_loss

ROWS, TOKENS, MAX_COMPLETION = 6, 7, 9
EPS_LOW, EPS_HIGH = 0.2, 0.28
# (processes P, gradient accumulation G, steps_per_generation S): TRL's dapo normaliser depends on all three
LAYOUTS = [(1, 1, 1), (2, 4, 4), (4, 2, 8)]


def random_batch(seed: int) -> dict[str, torch.Tensor]:
    """Completions of varied lengths, rows 1 and 4 fully masked (truncated), and policy / old / reference
    log-probs far enough apart that ratios leave [1 - 0.2, 1 + 0.28] both ways."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, TOKENS + 1, (ROWS,), generator=generator)
    lengths[1] = lengths[4] = 0
    mask = (torch.arange(TOKENS) < lengths.unsqueeze(1)).long()

    def noise(scale: float) -> torch.Tensor:
        return torch.randn((ROWS, TOKENS), generator=generator, dtype=torch.float64) * scale

    logps = -torch.rand((ROWS, TOKENS), generator=generator, dtype=torch.float64) * 3
    # both signs among the counted rows 0, 2, 3, 5, so both clips can bite
    signs = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
    advantages = torch.randn(ROWS, generator=generator, dtype=torch.float64).abs() * signs
    old = logps + noise(0.3)
    old[3, 0] = logps[3, 0] + 1.0  # ratio 1/e with A < 0: clipped below
    old[0, 0] = logps[0, 0] - 1.0  # ratio e with A > 0: clipped above
    return {"logps": logps, "old": old, "ref": logps + noise(0.2), "advantages": advantages, "mask": mask}


def trl_loss_self(logps: torch.Tensor, loss_type: str, beta: float, layout: tuple[int, int, int]):
    """The attributes `_compute_loss` reads, for token-level sampling without vLLM, entropy or OPSM."""
    processes, accumulation, steps_per_generation = layout
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (logps, torch.zeros_like(logps), None),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        loss_type=loss_type,
        beta=beta,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        use_vllm=False,
        _entropy_bonus_enabled=False,
        args=SimpleNamespace(
            delta=None, use_bias_correction_kl=False, steps_per_generation=steps_per_generation
        ),
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=accumulation,
        max_completion_length=MAX_COMPLETION,
        # one process's view: reductions and gathers over processes are the identity
        accelerator=SimpleNamespace(
            num_processes=processes, reduce=lambda t, reduction: t, gather=lambda t: t
        ),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )


def trl_loss(batch, loss_type: str, beta: float, with_old: bool, layout, num_items: int):
    """TRL's loss, d loss / d logps and logged metrics for the batch."""
    logps = batch["logps"].clone().requires_grad_(True)
    fake = trl_loss_self(logps, loss_type, beta, layout)
    inputs = {
        "prompt_ids": torch.zeros((ROWS, 2), dtype=torch.long),
        "prompt_mask": torch.ones((ROWS, 2), dtype=torch.long),
        "completion_ids": torch.zeros((ROWS, TOKENS), dtype=torch.long),
        "completion_mask": batch["mask"],
        "advantages": batch["advantages"],
        "num_items_in_batch": torch.tensor(num_items),
        "ref_per_token_logps": batch["ref"],
    }
    if with_old:
        inputs["old_per_token_logps"] = batch["old"]
    loss = GRPOTrainer._compute_loss(fake, fake.model, inputs)
    loss.backward()
    return loss.detach(), logps.grad, fake._metrics["train"]


def our_loss(batch, loss_type: str, beta: float, with_old: bool, layout, num_items: int):
    processes, accumulation, steps_per_generation = layout
    logps = batch["logps"].clone().requires_grad_(True)
    parts = grpo_loss(
        logps,
        batch["old"] if with_old else None,
        batch["ref"],
        batch["advantages"],
        batch["mask"],
        loss_type=loss_type,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        beta=beta,
        max_completion_tokens=MAX_COMPLETION,
        # the module doc's mapping: TRL's generation-batch count, rescaled to one step, per process
        tokens_in_batch=num_items * accumulation / (steps_per_generation * processes),
        micro_batches=accumulation,
    )
    parts.loss.backward()
    return parts, logps.grad


@pytest.mark.parametrize("with_old", [False, True], ids=["one_pass", "old_logps"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_loss_gradient_and_metrics_equal_trl(loss_type, beta, seed, with_old):
    batch = random_batch(seed)
    layout = LAYOUTS[seed]
    processes, _, steps_per_generation = layout
    # the generation batch: this micro-batch plus others, on every process, with other token counts
    num_items = int(batch["mask"].sum()) * steps_per_generation * processes + 5 * seed
    expected, expected_grad, metrics = trl_loss(batch, loss_type, beta, with_old, layout, num_items)
    parts, grad = our_loss(batch, loss_type, beta, with_old, layout, num_items)

    torch.testing.assert_close(parts.loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert parts.clip_low.item() == pytest.approx(metrics["clip_ratio/low_mean"][-1])
    assert parts.clip_high.item() == pytest.approx(metrics["clip_ratio/high_mean"][-1])
    if beta:
        assert parts.kl.item() == pytest.approx(metrics["kl"][-1])
    else:
        assert parts.kl is None and "kl" not in metrics
    if with_old:  # the data must exercise both clips, or the comparison above proves little about them
        assert parts.clip_low > 0 and parts.clip_high > 0
    else:
        assert parts.clip_low == 0 and parts.clip_high == 0


def trl_advantages(rewards: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """TRL's advantages: `_generate_and_score_completions` on one process, with completions and rewards
    stubbed (one reward function returning `rewards`), read back from its output."""
    n = rewards.numel()
    fake = SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), process_index=0, gather=lambda t: t),
        model=SimpleNamespace(training=True, is_gradient_checkpointing=False),
        environment_factories=None,
        environments=None,
        tools=None,
        _generate=lambda prompts: ([[1]] * n, [[2, 3]] * n, None, ["c"] * n, None, {}, None, None),
        _tokenizer=SimpleNamespace(pad_token_id=0),
        pad_to_multiple_of=None,
        mask_truncated_completions=False,
        args=SimpleNamespace(
            per_device_train_batch_size=n,
            steps_per_generation=1,
            gradient_accumulation_steps=1,
            gradient_checkpointing_kwargs=None,
        ),
        num_iterations=1,
        use_vllm=False,
        beta=0.0,
        _calculate_rewards=lambda *args: rewards.unsqueeze(1),
        num_generations=group_size,
        multi_objective_aggregation="sum_then_normalize",
        reward_weights=torch.ones(1, dtype=rewards.dtype),
        scale_rewards=scale,
        reward_func_names=["reward"],
        _metrics={"train": defaultdict(list)},
        _logs={
            "prompt": [],
            "completion": [],
            "advantages": [],
            "rewards": defaultdict(list),
            "extra": defaultdict(list),
        },  # fmt: skip
        _pending_extra_logs={},
        _pending_metrics={},
    )
    return GRPOTrainer._generate_and_score_completions(fake, [{"prompt": "p"}] * n)["advantages"]


def shifted_groups(seed: int, groups: int = 4, group_size: int = 4) -> torch.Tensor:
    """Rewards whose groups have clearly different means (group g around 3 g) and spreads."""
    generator = torch.Generator().manual_seed(seed)
    spread = torch.rand((groups, 1), generator=generator, dtype=torch.float64) * 2 + 0.1
    noise = torch.randn((groups, group_size), generator=generator, dtype=torch.float64)
    return (3.0 * torch.arange(groups, dtype=torch.float64).unsqueeze(1) + spread * noise).flatten()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scale", SCALES)
def test_group_advantages_equal_trl(scale, seed):
    rewards = shifted_groups(seed)
    rewards[5] = float("nan")  # an unscorable completion: out of its group's statistics, advantage 0
    rewards[8:12] = 1.5  # a group of equal rewards: std 0, the 1e-4 keeps it at 0 instead of 0/0
    ours = group_advantages(rewards, group_size=4, scale=scale)
    torch.testing.assert_close(ours, trl_advantages(rewards, group_size=4, scale=scale))
    assert ours[5] == 0 and ours[8:12].abs().max() == 0


@pytest.mark.parametrize("scale", ["group", "none"])
def test_advantages_are_per_group_not_per_batch(scale):
    """The planted fault "normalise over the whole batch": on groups with different means it gives other
    advantages, so the TRL comparison above goes red; here the difference is shown directly."""
    rewards = shifted_groups(0)
    ours = group_advantages(rewards, group_size=4, scale=scale)
    whole_batch = rewards - rewards.mean()
    if scale == "group":
        whole_batch = whole_batch / (rewards.std() + 1e-4)
    assert (ours - whole_batch).abs().max() > 1.0
    # the property the grouping buys: every prompt's completions are compared among themselves only
    torch.testing.assert_close(ours.view(4, 4).sum(dim=1), torch.zeros(4, dtype=ours.dtype))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_truncated_completion_has_exactly_zero_gradient(loss_type):
    batch = random_batch(0)
    batch["advantages"][1] = 50.0  # a large advantage must not leak through the mask either
    parts, grad = our_loss(batch, loss_type, 0.04, True, LAYOUTS[1], num_items=40)
    assert parts.loss.isfinite()
    assert torch.equal(grad[1], torch.zeros(TOKENS, dtype=grad.dtype))
    assert torch.equal(grad[4], torch.zeros(TOKENS, dtype=grad.dtype))
    assert torch.equal(grad[batch["mask"] == 0], torch.zeros_like(grad[batch["mask"] == 0]))
    assert grad[batch["mask"] == 1].abs().min() > 0  # while every counted token does get a gradient


def test_bad_arguments_are_refused():
    batch = random_batch(0)
    common = dict(
        epsilon_low=0.2, epsilon_high=0.2, max_completion_tokens=9, tokens_in_batch=10, micro_batches=1
    )
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(batch["logps"], None, None, batch["advantages"], batch["mask"], loss_type="bnpo", beta=0.0,
                  **common)  # fmt: skip
    with pytest.raises(ValueError, match="ref_logps"):
        grpo_loss(batch["logps"], None, None, batch["advantages"], batch["mask"], loss_type="grpo", beta=0.1,
                  **common)  # fmt: skip
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(8), group_size=3, scale="group")
