"""One LoRA-target resolver (peft's own matching on the meta-device architecture): the model builder, the
planner and `tuneforge data` agree with each other and with the adapter peft really builds."""

import pytest
from conftest import quick_config

from tuneforge.config.schema import LoraConfig, ModelConfig, QuantConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.build import build_model
from tuneforge.model.load import architecture
from tuneforge.model.plan import Setup, make_plan
from tuneforge.model.targets import resolve_targets
from tuneforge.train.preview import data_report

LLAMA_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize(
    "targets",
    ["all-linear", ["q_proj", "v_proj"], ["q_proj", "lm_head"], ["self_attn.o_proj", "down_proj"]],
    ids=["all-linear", "attention", "with-head", "dotted"],
)
def test_builder_plan_and_data_report_agree_with_the_real_adapter(tiny_models, demo_files, targets):
    config = quick_config(tiny_models("llama"), *demo_files, lora={"target_modules": targets})
    bundle = build_model(config.model, config.quant, config.lora, False)
    resolved = resolve_targets(architecture(config.model).config, config.lora)

    built = {name.rsplit(".", 1)[-1]: count for name, count in bundle.adapted_modules.items()}
    assert sum(resolved.per_name.values()) == sum(built.values()) == len(resolved.layers)
    report_targets = data_report(config)[1]["lora_targets"]
    assert report_targets == resolved.per_name
    lora_params = sum(p.numel() for n, p in bundle.model.named_parameters() if "lora_" in n)
    plan = make_plan(Setup(config.model, config.quant, config.lora, config.train), 64, "H100-80GB")
    assert plan.params_trainable == bundle.trainable_params == lora_params, (
        "the planner counts the real adapter"
    )


def test_all_linear_adapts_every_linear_layer_but_the_output_head(tiny_models):
    hf_config = architecture(ModelConfig(name_or_path=str(tiny_models("llama")))).config
    resolved = resolve_targets(hf_config, LoraConfig())
    assert set(resolved.per_name) == LLAMA_LINEARS and set(resolved.per_name.values()) == {2}
    gpt2 = architecture(ModelConfig(name_or_path=str(tiny_models("gpt2")))).config
    assert set(resolve_targets(gpt2, LoraConfig()).per_name) == {"c_attn", "c_proj", "c_fc"}, "Conv1D too"


def test_a_name_that_matches_nothing_lists_the_linear_layers(tiny_models):
    hf_config = architecture(ModelConfig(name_or_path=str(tiny_models("llama")))).config
    for targets in (["q_proj", "qkv_proj"], ["qkv_proj"]):  # some names match, or none does
        with pytest.raises(TuneforgeError, match="'qkv_proj' matches no linear layer") as err:
            resolve_targets(hf_config, LoraConfig(target_modules=targets))
        assert "lm_head" in str(err.value) and "gate_proj" in str(err.value)
    with pytest.raises(TuneforgeError, match="matches no linear layer"):
        build_model(
            ModelConfig(name_or_path=str(tiny_models("llama"))),
            QuantConfig(),
            LoraConfig(target_modules=["q_proj", "qkv_proj"]),
            False,
        )
