"""QLoRA on CPU computes true gradients after an evaluation pass, on every x86 CPU.

bitsandbytes decides per layer whether the CPU has AVX512-BF16 (`has_avx512bf16`, read when a Linear4bit
is built). Where it has, an evaluation pass repacks the 4-bit weights into a layout whose matmul has no
backward through the layer's input. Both paths are forced here, whatever this machine's CPU: the LoRA
gradients on the 4-bit base, after an evaluation pass, must equal those on the same weights dequantized
into plain fp32 layers. Tolerance: 1e-4 of the largest gradient (float rounding room; measured 0.0 on CPU,
where both paths multiply the same fp32 numbers). With the repacked path the difference was 95%.
"""

import bitsandbytes as bnb
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from tuneforge.config.schema import LoraConfig, ModelConfig, QuantConfig
from tuneforge.model.build import build_model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    # Widths divisible by 32, so the repacked path can run at all (it asserts that), as on real models.
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("llama-32")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


def lora_gradients(model, batch) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(**batch).loss.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def qlora_and_reference(llama_dir, monkeypatch, cpu_path: bool):
    monkeypatch.setattr("bitsandbytes.nn.modules.has_avx512bf16", lambda: cpu_path)
    assert bnb.nn.Linear4bit(32, 32).support_avx512bf16_for_cpu is cpu_path, (
        "bitsandbytes takes the forced path"
    )
    # weights only
    monkeypatch.setattr("tuneforge.model.build.load_tokenizer", lambda model, adapter=None: None)
    lora = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    quantized = build_model(
        ModelConfig(name_or_path=str(llama_dir)), QuantConfig(mode="4bit"), lora, False
    ).model
    layers = [m for m in quantized.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.quant_state is not None for m in layers)

    # The reference: the very same 4-bit weights, dequantized into plain fp32 Linear layers.
    reference = build_model(ModelConfig(name_or_path=str(llama_dir)), QuantConfig(), lora, False).model
    dequantized = {
        name.removesuffix(".base_layer"): bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state)
        for name, m in quantized.named_modules()
        if isinstance(m, bnb.nn.Linear4bit)
    }
    with torch.no_grad():
        for name, module in reference.named_modules():
            if name.removesuffix(".base_layer") in dequantized and isinstance(module, torch.nn.Linear):
                module.weight.copy_(dequantized.pop(name.removesuffix(".base_layer")))
        assert not dequantized, "every quantized layer has its fp32 twin"
        trainable = dict(quantized.named_parameters())
        for name, param in reference.named_parameters():
            if param.requires_grad:  # same LoRA A and B; B is nudged off zero so every gradient flows
                param.copy_(trainable[name])
                if "lora_B" in name:
                    noise = torch.randn_like(param) * 0.02
                    param.add_(noise)
                    trainable[name].data.add_(noise)
    return quantized, reference


@pytest.mark.parametrize("cpu_path", [True, False], ids=["avx512bf16-path-forced-on", "forced-off"])
def test_lora_gradients_on_4bit_base_equal_the_dequantized_reference_after_evaluation(
    llama_dir, monkeypatch, cpu_path
):
    quantized, reference = qlora_and_reference(llama_dir, monkeypatch, cpu_path)
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (2, 24))
    batch = {"input_ids": ids, "labels": ids}

    quantized.eval()  # the evaluation the Trainer runs before the first step
    with torch.no_grad():
        eval_loss = quantized(**batch).loss
    quantized.train()
    reference.train()
    got, expected = lora_gradients(quantized, batch), lora_gradients(reference, batch)

    assert torch.isfinite(eval_loss)
    assert got.keys() == expected.keys() and len(got) == 2 * 7 * 2  # A and B, 7 layers per block, 2 blocks
    scale = max(g.abs().max() for g in expected.values())
    worst = max((got[name] - expected[name]).abs().max() for name in got)
    assert worst <= TOLERANCE * scale, f"max gradient difference {worst:.3g} vs largest gradient {scale:.3g}"
    assert all(
        not getattr(m.weight.quant_state, "packing_format_for_cpu", False)
        for m in quantized.modules()
        if isinstance(m, bnb.nn.Linear4bit)
    ), "weights keep the standard layout"
