"""The planner: components respond to the settings that drive them; the CLI prints and exports a plan."""

import json

import pytest
from conftest import quick_config
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.model.plan import FITS, Setup, make_plan


@pytest.fixture
def config_for(tiny_models, demo_files):
    def make(**sections):
        return quick_config(tiny_models("llama"), *demo_files, **sections)

    return make


def plan(config, device):
    return make_plan(
        Setup(config.model, config.quant, config.lora, config.train), config.train.max_length, device
    )


def test_quantization_shrinks_weights_and_checkpointing_shrinks_activations(config_for):
    plain = plan(config_for(), "H100-80GB")
    nf4 = plan(config_for(quant={"mode": "4bit"}), "cpu")
    fp32 = plan(config_for(), "cpu")
    checkpointed = plan(config_for(train={"gradient_checkpointing": True}), "H100-80GB")
    full = plan(config_for(lora={"method": "full"}), "H100-80GB")
    assert nf4.weights_gib < fp32.weights_gib
    # kbit preparation upcasts what it does not quantize (embeddings here) to fp32: on this embedding-heavy
    # tiny model that outweighs the 4-bit saving against bf16, as it would in reality.
    assert nf4.weights_gib > plain.weights_gib
    assert checkpointed.activations_gib < plain.activations_gib
    assert full.params_trainable > plain.params_trainable > 0
    assert full.optimizer_gib > plain.optimizer_gib
    parts = ("weights", "adapter", "gradients", "optimizer", "activations", "logits", "overhead")
    assert plain.total_gib == pytest.approx(sum(getattr(plain, f"{p}_gib") for p in parts))


def test_largest_batch_fits_and_the_next_does_not(config_for):
    small_gpu = plan(config_for(train={"max_length": 4096}), "T4")
    largest = small_gpu.max_batch_that_fits
    assert 1 <= largest < 1024, "a real limit, not the search's cap"
    fits = plan(config_for(train={"max_length": 4096, "batch_size": largest}), "T4")
    assert fits.total_gib <= FITS * fits.device_gib
    too_big = plan(config_for(train={"max_length": 4096, "batch_size": largest + 1}), "T4")
    assert too_big.total_gib > FITS * too_big.device_gib


def test_plan_cli_json(config_for, tmp_path):
    from tuneforge.config.loading import config_to_yaml

    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config_for()))
    result = CliRunner().invoke(app, ["plan", str(path), "--gpu", "A100-80GB", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["device"] == "A100-80GB" and plan["total_gib"] > 0 and plan["tokens_per_second"] > 0
    unknown = CliRunner().invoke(app, ["plan", str(path), "--gpu", "Z80"])
    assert unknown.exit_code == 2 and "H100-80GB" in unknown.output


def test_gpus_divide_what_the_strategy_shards(config_for, tmp_path):
    from tuneforge.config.loading import config_to_yaml

    config = config_for(quant={"mode": "4bit"}, train={"max_length": 512})
    setup = Setup(config.model, config.quant, config.lora, config.train)
    one = make_plan(setup, 512, "A10G")
    ddp = make_plan(setup, 512, "A10G", gpus=4, strategy="ddp")
    fsdp = make_plan(setup, 512, "A10G", gpus=4, strategy="fsdp")
    zero2 = make_plan(setup, 512, "A10G", gpus=4, strategy="deepspeed-zero2")
    assert ddp.weights_gib == one.weights_gib and ddp.gradients_gib == 2 * one.gradients_gib  # + buckets
    assert fsdp.optimizer_gib == pytest.approx(one.optimizer_gib / 4)
    assert one.weights_gib / 4 < fsdp.weights_gib <= one.weights_gib  # a shard plus the gathered layers
    assert zero2.weights_gib == one.weights_gib and zero2.gradients_gib == pytest.approx(
        one.gradients_gib / 4
    )
    assert fsdp.activations_gib == one.activations_gib, "each device still runs its own batch"
    assert ddp.tokens_per_second == pytest.approx(4 * 0.9 * one.tokens_per_second, rel=0.01)

    path = tmp_path / "c.yaml"
    path.write_text(
        config_to_yaml(
            config.model_copy(
                update={"distributed": config.distributed.model_copy(update={"strategy": "fsdp"})}
            )
        )
    )
    result = CliRunner().invoke(app, ["plan", str(path), "--gpu", "A10G", "--gpus", "4", "--json"])
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert (
        cli["gpus"] == 4
        and cli["strategy"] == "fsdp"
        and cli["optimizer_gib"] == pytest.approx(fsdp.optimizer_gib)
    )


def test_grpo_plans_its_rollouts(config_for):
    """The plan counts what GRPO generates before each step: P prompts x G answers x T tokens, their KV
    cache (more prompts decoded together, more cache), and the generation and extra forward passes (the
    KL reference, the old log-probs) in the run time."""
    from tuneforge.train.planning import plan_run

    def grpo(group_size=8, together=2, max_steps=10, iterations=1, beta=0.0):
        return plan_run(
            config_for(
                train={"method": "grpo", "max_steps": max_steps, "max_length": 64},
                eval={"batch_size": together},
                grpo={
                    "group_size": group_size,
                    "prompts_per_step": 4,
                    "max_completion_tokens": 32,
                    "iterations": iterations,
                    "beta": beta,
                    "rewards": [{"kind": "exact_match", "column": "reference"}],
                },
            ),
            "A10G",
            1,
        )

    base = grpo()
    assert base.rollout_tokens_per_step == 4 * 8 * 32 and base.seq_len == 64 + 32
    assert grpo(together=4).rollout_cache_gib == pytest.approx(2 * base.rollout_cache_gib)
    assert base.rollout_cache_gib > 0 and grpo(group_size=16).run_hours > 1.9 * base.run_hours
    # two passes per batch of rollouts: half the sampling, plus the old log-probs' pass: the same FLOPs
    assert grpo(iterations=2).run_hours == pytest.approx(base.run_hours)
    assert grpo(beta=0.04).run_hours > 1.1 * base.run_hours, "the KL reference's forward pass"
    sft = plan_run(config_for(train={"max_steps": 10, "max_length": 64}), "A10G", 1)
    assert sft.rollout_tokens_per_step is None and sft.rollout_cache_gib == 0
