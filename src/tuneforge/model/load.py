"""Load a tokenizer and a base model (hub id or local folder), optionally quantized, on this process's device.

Also builds the architecture alone on the meta device (no weights read or allocated), which the LoRA
target resolver and the planner use.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    GgufConfig,
    PreTrainedModel,
)

from tuneforge.config.schema import ModelConfig, QuantConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.gguf import usable_gguf
from tuneforge.model.weights import model_folder_weights

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name != "auto":
        return DTYPES[name]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # bf16 matmuls on CPU are slow or unsupported


def process_device() -> torch.device:
    """The device this process computes on: cuda:LOCAL_RANK with CUDA (torchrun and accelerate set one
    LOCAL_RANK per process), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def check_model_source(model: ModelConfig) -> None:
    name_or_path = model.name_or_path
    path = Path(name_or_path).expanduser()
    if name_or_path.startswith((".", "/", "~")) and not path.exists():
        raise TuneforgeError(f"model folder not found: {name_or_path} (model.name_or_path)")
    if path.is_file():
        raise TuneforgeError(
            f"{name_or_path} is a file; model.name_or_path must be a transformers model folder, a hub id or a "
            ".gguf file"
        )
    if model.gguf_file is not None:
        return
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f" It holds {ggufs[0]}: set model.gguf_file: {ggufs[0]}." if ggufs else ""
        raise TuneforgeError(
            f"{name_or_path}: no config.json; model.name_or_path must be a transformers model folder.{hint}"
        )


def source(model: ModelConfig, notice=print) -> dict:
    """Where and how transformers loads this model: the same for the tokenizer, the config and the weights."""
    check_model_source(model)
    found = {"revision": model.revision, "trust_remote_code": model.trust_remote_code}
    folder = Path(model.name_or_path).expanduser()
    if model.gguf_file is None:
        return {"pretrained_model_name_or_path": model.name_or_path, **found}
    if folder.is_dir():
        folder = usable_gguf(folder, model.gguf_file, notice)
    return {"pretrained_model_name_or_path": str(folder), "gguf_file": model.gguf_file, **found}


def check_weights(model: ModelConfig) -> dict:
    """Safetensors only, unless the user opts in to pickle; returns from_pretrained's matching argument."""
    path = Path(model.name_or_path).expanduser()
    if model.gguf_file is not None:  # GGUF is a plain tensor format: nothing in it runs when it loads
        return {}
    if not path.is_dir():  # a hub id: ask for safetensors, which the hub serves for nearly every model
        return {} if model.allow_pickle else {"use_safetensors": True}
    return model_folder_weights(path, model.allow_pickle, f"{model.name_or_path} (model.name_or_path)")


def load_tokenizer(model: ModelConfig, adapter: Path | None = None):
    """The base model's tokenizer, or the one saved with the adapter a run starts from (model.adapter): it
    carries the chat template that adapter was trained with."""
    where = source(model)
    if adapter is not None and (adapter / "tokenizer_config.json").is_file():
        where = {"pretrained_model_name_or_path": str(adapter)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(**where)
    except (
        OSError,
        ValueError,
    ) as exc:  # not on the hub, no network, gated repo: the reason is in the message
        raise TuneforgeError(
            f"could not load the tokenizer of {model.name_or_path!r} (model.name_or_path): {exc}"
        ) from exc
    if tokenizer.pad_token is None:
        # Safe here: labels are built before padding and padded by position with -100, so EOS keeps its loss.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def quantization_config(
    quant: QuantConfig, compute_dtype: torch.dtype, for_fsdp: bool = False
) -> BitsAndBytesConfig | None:
    if quant.mode == "none":
        return None
    if quant.mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        # FSDP shards a layer's parameters together only when they share a dtype: packed 4-bit weights are
        # then stored in the compute dtype's elements (the same bytes), as in Answer.AI's FSDP + QLoRA.
        **({"bnb_4bit_quant_storage": compute_dtype} if for_fsdp else {}),
    )


def load_base_model(
    model: ModelConfig, quant: QuantConfig, for_fsdp: bool = False
) -> tuple[PreTrainedModel, torch.dtype]:
    """The base weights; quantized ones are placed on this process's device, others stay where they load."""
    where = source(model, notice=lambda message: None)  # said once already, by load_tokenizer
    kwargs = check_weights(model)
    dtype = resolve_dtype(model.dtype)
    compute = dtype if quant.compute_dtype == "auto" else DTYPES[quant.compute_dtype]
    if quant.mode != "none" and torch.cuda.is_available():
        kwargs["device_map"] = {"": process_device().index}
    if model.attn_implementation != "auto":
        kwargs["attn_implementation"] = model.attn_implementation
    quantized = quantization_config(quant, compute, for_fsdp)
    if model.gguf_file is not None:  # every weight unpacked into a plain dense model, in `dtype`
        quantized = GgufConfig(dequantize=True)
    try:
        base = AutoModelForCausalLM.from_pretrained(
            **where, dtype=dtype, quantization_config=quantized, **kwargs
        )
    except (OSError, ValueError) as exc:  # no network, gated repo, missing or damaged files
        raise TuneforgeError(
            f"could not load the model {model.name_or_path!r} (model.name_or_path): {exc}"
        ) from exc
    if quant.mode == "4bit":
        keep_standard_4bit_layout(base)
    return base, dtype


def keep_standard_4bit_layout(model: nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for AVX512-BF16 CPUs.

    bitsandbytes 0.50 repacks a Linear4bit's weight into a CPU-specific layout the first time the layer runs
    on such a CPU in eval mode without grad (the evaluation before training), and keeps it. Its matmul on
    that layout has no backward through the layer's input, so every later training step computes wrong LoRA
    gradients (step-1 gradient norm half the true one), and layers whose width is not a multiple of 32 fail
    ("N must be divisible by block_n"). The layer's own switch keeps the standard layout on every CPU.
    Versions before 0.50 have neither the repacking nor the switch; tests/test_qlora_gradients.py checks
    the switch exists and works on the installed version.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def architecture(model: ModelConfig) -> PreTrainedModel:
    """The model's modules on the meta device: names and shapes, no weights downloaded or allocated."""
    where = source(model, notice=lambda message: None)
    try:
        hf_config = AutoConfig.from_pretrained(**where)
    except (OSError, ValueError) as exc:
        raise TuneforgeError(
            f"could not load the config of {model.name_or_path!r} (model.name_or_path): {exc}"
        ) from exc
    return meta_model(hf_config, model.trust_remote_code)


def meta_model(hf_config, trust_remote_code: bool = False) -> PreTrainedModel:
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(hf_config, trust_remote_code=trust_remote_code)


def context_length(hf_config) -> int | None:
    """The longest sequence the model was built for, where its config says so."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(hf_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
