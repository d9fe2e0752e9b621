"""Model stage: sections `model`, `quant`, `lora` -> a trainable model and its tokenizer.

Loads a hub id or local folder, optionally quantized to 4/8 bit with bitsandbytes (QLoRA), then wraps
it with a peft LoRA adapter whose targets are checked against the model's real linear layers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from tuneforge.config import LoraConfig, ModelConfig, QuantConfig
from tuneforge.errors import TuneforgeError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelBundle:
    model: nn.Module
    tokenizer: object
    dtype: torch.dtype
    trainable_params: int
    total_params: int
    adapted_modules: dict[str, int]


def resolve_dtype(name: str) -> torch.dtype:
    if name != "auto":
        return DTYPES[name]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # bf16 matmuls on CPU are slow or unsupported


def load_tokenizer(model: ModelConfig):
    check_model_source(model.name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model.name_or_path, revision=model.revision, trust_remote_code=model.trust_remote_code
        )
    except OSError as exc:  # not on the hub, no network, gated repo: the reason is in the message
        raise TuneforgeError(
            f"could not load the tokenizer of {model.name_or_path!r} (model.name_or_path): {exc}"
        ) from exc
    if tokenizer.pad_token is None:
        # Safe here: labels are built before padding and padded by position with -100, so EOS keeps its loss.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def quantization_config(quant: QuantConfig, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    if quant.mode == "none":
        return None
    if quant.mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_base_model(model: ModelConfig, quant: QuantConfig) -> tuple[PreTrainedModel, torch.dtype]:
    check_model_source(model.name_or_path)
    dtype = resolve_dtype(model.dtype)
    compute = dtype if quant.compute_dtype == "auto" else DTYPES[quant.compute_dtype]
    kwargs = {}
    if quant.mode != "none" and torch.cuda.is_available():
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if model.attn_implementation != "auto":
        kwargs["attn_implementation"] = model.attn_implementation
    base = AutoModelForCausalLM.from_pretrained(
        model.name_or_path,
        revision=model.revision,
        dtype=dtype,
        trust_remote_code=model.trust_remote_code,
        quantization_config=quantization_config(quant, compute),
        **kwargs,
    )
    return base, dtype


def check_model_source(name_or_path: str) -> None:
    path = Path(name_or_path).expanduser()
    if name_or_path.startswith((".", "/", "~")) and not path.exists():
        raise TuneforgeError(f"model folder not found: {name_or_path} (model.name_or_path)")
    if path.is_dir() and not (path / "config.json").is_file():
        raise TuneforgeError(
            f"{name_or_path}: no config.json; model.name_or_path must be a transformers model folder"
        )


def linear_module_names(model: nn.Module) -> Counter[str]:
    """Last name part of every layer LoRA can adapt (nn.Linear, bitsandbytes' quantized linears, GPT-2's Conv1D)."""
    names: Counter[str] = Counter()
    for full_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, Conv1D)) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names[full_name.rsplit(".", 1)[-1]] += 1
    return names


def check_targets(model: nn.Module, targets: list[str]) -> None:
    available = linear_module_names(model)
    unknown = [name for name in targets if name not in available]
    if unknown:
        raise TuneforgeError(
            f"lora.target_modules: {', '.join(repr(n) for n in unknown)} matches no linear layer of this model. "
            f"Its linear layers are: {', '.join(sorted(available))}. Or use target_modules: all-linear."
        )


def check_modules_to_save(model: nn.Module, names: list[str]) -> None:
    leaves = {full_name.rsplit(".", 1)[-1] for full_name, _ in model.named_modules() if full_name}
    unknown = [name for name in names if name not in leaves]
    if unknown:
        top_level = [name for name, _ in model.named_modules() if name.count(".") <= 2 and name]
        raise TuneforgeError(
            f"lora.modules_to_save: {', '.join(repr(n) for n in unknown)} is not a module of this model. "
            f"Embedding and head names here: {', '.join(sorted({n.rsplit('.', 1)[-1] for n in top_level}))}"
        )


def apply_lora(
    model: PreTrainedModel, lora: LoraConfig, quantized: bool, gradient_checkpointing: bool
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
    if lora.target_modules != "all-linear":
        check_targets(model, lora.target_modules)
    check_modules_to_save(model, lora.modules_to_save)
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save or None,
        use_dora=lora.dora,
        use_rslora=lora.rslora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def save_trained(model: nn.Module, out_dir: Path) -> None:
    """Save the adapter (or, for a full fine-tune, the whole model) as safetensors."""
    if isinstance(model, PeftModel):
        # The vocabulary is never resized, so a LoRA on lm_head needs only its A/B matrices, not a copy of
        # the base head (peft's default when lm_head is targeted: ~500 MB for a 7B model).
        model.save_pretrained(out_dir, save_embedding_layers=False)
    else:
        model.config.use_cache = True  # turned off for training only; inference wants it
        model.save_pretrained(out_dir)


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
    model_cfg: ModelConfig, quant: QuantConfig, lora: LoraConfig, gradient_checkpointing: bool
) -> ModelBundle:
    tokenizer = load_tokenizer(model_cfg)
    if lora.method == "full" and resolve_dtype(model_cfg.dtype) == torch.float16:
        # fp16 mixed precision needs fp32 master weights; training fp16 weights in full fails in the grad scaler.
        model_cfg = model_cfg.model_copy(update={"dtype": "float32"})
    base, dtype = load_base_model(model_cfg, quant)
    # No KV cache while training: it is never reused, and its presence turns off packed-sequence masking.
    base.config.use_cache = False
    if gradient_checkpointing and quant.mode == "none":
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    model = apply_lora(
        base, lora, quantized=quant.mode != "none", gradient_checkpointing=gradient_checkpointing
    )
    trainable, total = count_parameters(model)
    return ModelBundle(model, tokenizer, dtype, trainable, total, adapted_module_names(model))
