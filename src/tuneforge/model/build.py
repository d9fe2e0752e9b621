"""Build the trainable model: the tokenizer, the (quantized) base, and the peft LoRA adapter on top.

bundle = build_model(config.model, config.quant, config.lora, gradient_checkpointing=False)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel
from transformers.trainer_utils import load_sharded_checkpoint

from tuneforge.config.schema import LoraConfig, ModelConfig, QuantConfig
from tuneforge.model.load import load_base_model, load_tokenizer, resolve_dtype
from tuneforge.model.start import continue_adapter, starting_adapter
from tuneforge.model.targets import check_modules_to_save, peft_lora_config, resolve_targets


@dataclass
class ModelBundle:
    model: nn.Module
    tokenizer: object
    dtype: torch.dtype
    trainable_params: int
    total_params: int
    adapted_modules: dict[str, int]


def apply_lora(
    model: PreTrainedModel,
    lora: LoraConfig,
    *,
    quantized: bool,
    gradient_checkpointing: bool,
    trust_remote_code: bool = False,
    start: Path | None = None,
) -> nn.Module:
    if quantized:
        # Casts norms to fp32 and makes inputs require grad, so checkpointed quantized layers get gradients.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if lora.method == "full":
        return model
    if start is not None:  # the adapter of an earlier run, trained further (model.adapter)
        return continue_adapter(model, start)
    resolve_targets(
        model.config, lora, trust_remote_code
    )  # names that match nothing are an error before anything is wrapped
    check_modules_to_save(model, lora.modules_to_save)
    return get_peft_model(model, peft_lora_config(lora))


def save_trained(model: nn.Module, out_dir: Path) -> None:
    """Save the adapter (or, for a full fine-tune, the whole model) as safetensors."""
    if isinstance(model, PeftModel):
        # The vocabulary is never resized, so a LoRA on lm_head needs only its A/B matrices, not a copy of
        # the base head (peft's default when lm_head is targeted: ~500 MB for a 7B model).
        model.save_pretrained(out_dir, save_embedding_layers=False)
    else:
        model.config.use_cache = True  # turned off for training only; inference wants it
        model.save_pretrained(out_dir)


def load_trained(model: nn.Module, folder: Path) -> None:
    """Load what `save_trained` (or a Trainer checkpoint) wrote in `folder` into the model in memory."""
    if isinstance(model, PeftModel):
        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
    elif (folder / "model.safetensors.index.json").is_file():
        load_sharded_checkpoint(model, str(folder))
    else:
        model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)


def adapted_module_names(model: nn.Module) -> dict[str, int]:
    found: Counter[str] = Counter()
    for full_name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            found[full_name.rsplit(".", 1)[-1]] += 1
    return dict(sorted(found.items()))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = total = 0
    for param in model.parameters():
        # bitsandbytes packs two 4-bit weights per byte; count real weights, not storage elements.
        n = param.numel() * 2 if type(param).__name__ == "Params4bit" else param.numel()
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total


def build_model(
    model_cfg: ModelConfig,
    quant: QuantConfig,
    lora: LoraConfig,
    gradient_checkpointing: bool,
    for_fsdp: bool = False,
) -> ModelBundle:
    start = starting_adapter(model_cfg)
    tokenizer = load_tokenizer(model_cfg, start)
    if lora.method == "full" and resolve_dtype(model_cfg.dtype) == torch.float16:
        # fp16 mixed precision needs fp32 master weights; training fp16 weights in full fails in the grad scaler.
        model_cfg = model_cfg.model_copy(update={"dtype": "float32"})
    base, dtype = load_base_model(model_cfg, quant, for_fsdp)
    # No KV cache while training: it is never reused, and its presence turns off packed-sequence masking.
    base.config.use_cache = False
    if gradient_checkpointing and quant.mode == "none":
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    model = apply_lora(
        base,
        lora,
        quantized=quant.mode != "none",
        gradient_checkpointing=gradient_checkpointing,
        trust_remote_code=model_cfg.trust_remote_code,
        start=start,
    )
    trainable, total = count_parameters(model)
    return ModelBundle(model, tokenizer, dtype, trainable, total, adapted_module_names(model))
