"""Plan a run before starting it: memory by component, the largest batch that fits, tokens/s and run time.

The model is built on the meta device from its config (no weights are downloaded or allocated), so the
plan for a 70B model takes a second. Memory is an estimate from shapes; `bench/plan_accuracy.py`
compares it with measured peaks.

    tuneforge plan examples/mistral7b_qlora_chatdoctor.yaml --gpu H100-80GB

    make_plan(Setup(config.model, config.quant, config.lora, config.train), seq_len=1024, device="A10G")
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from tuneforge.config.schema import LoraConfig, ModelConfig, QuantConfig, TrainConfig
from tuneforge.model.head import HEAD_CHUNK_TOKENS, has_plain_head
from tuneforge.model.load import architecture, resolve_dtype
from tuneforge.model.targets import resolve_targets

GIB = 1024**3
# name: (memory GiB, dense bf16 TFLOP/s, typical model-FLOP utilisation for LoRA training)
DEVICES = {
    "H100-80GB": (79.6, 989.0, 0.35),
    "H200": (139.8, 989.0, 0.35),
    "A100-80GB": (79.2, 312.0, 0.40),
    "A100-40GB": (39.4, 312.0, 0.40),
    "L4": (22.0, 121.0, 0.35),
    "A10G": (22.0, 125.0, 0.35),
    "RTX4090": (23.6, 165.0, 0.35),
    "T4": (14.7, 65.0, 0.30),  # fp16: T4 has no bf16
}
OPTIMIZER_BYTES = {  # optimizer state per trainable parameter
    "adamw_torch": 8, "adamw_torch_fused": 8, "paged_adamw_32bit": 8,
    "paged_adamw_8bit": 2, "adamw_8bit": 2, "adafactor": 0.1, "sgd": 0,
}  # fmt: skip
CPU_RUNTIME_BYTES = 0.75 * GIB  # Python, torch, transformers, peft and datasets loaded, before any model
GPU_RUNTIME_BYTES = 1.0 * GIB  # CUDA context, cuBLAS workspace, allocator slack
FITS = 0.92  # share of device memory a plan may fill: the allocator fragments, kernels need workspace
QUANT_BYTES = {"4bit": 0.5 + 0.5 / 64 + 4 / (64 * 256), "8bit": 1.0}  # nf4 + double-quantised absmax; int8


@dataclass(frozen=True)
class Rollouts:
    """What an online method (GRPO) generates each optimizer step, per device."""

    sequences: int  # completions sampled per step; each is also one training sequence
    together: int  # completions decoded in one batch (their KV cache is the generation's memory)
    new_tokens: int  # the most tokens one completion may have
    every: int = 1  # optimizer steps per batch of rollouts (GRPO's iterations)
    forwards: float = 0.0  # forward-only passes over a step's sequences besides training's (a KL reference)


@dataclass
class Plan:
    device: str
    gpus: int  # memory figures are per device; tokens/s and run time for all of them
    strategy: str  # single, ddp, fsdp, deepspeed-zero2, deepspeed-zero3
    batch_size: int
    seq_len: int
    params_total: int
    params_trainable: int
    weights_gib: float
    adapter_gib: float
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    logits_gib: float
    overhead_gib: float
    total_gib: float
    device_gib: float
    max_batch_that_fits: int
    tokens_per_second: float
    run_hours: float | None
    rollout_tokens_per_step: int | None = None  # at most, per device and batch of rollouts
    rollout_cache_gib: float = 0.0  # KV cache while generating; the training tensors are freed then
    # Generation is planned at training's utilisation: an assumption, not measured; decoding small batches
    # on a GPU runs below it.


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Full module name -> (in_features, out_features) for every layer LoRA or quantization touches."""
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shapes[name] = (module.in_features, module.out_features)
        elif isinstance(module, Conv1D):
            shapes[name] = tuple(module.weight.shape)
    return shapes


def parameter_bytes(
    model: nn.Module, model_cfg: ModelConfig, quant: QuantConfig, lora: LoraConfig, dtype_bytes: int
) -> tuple[int, int, float, float]:
    """(total params, trainable params, weight bytes, adapter bytes)."""
    shapes = linear_shapes(model)
    head = model.get_output_embeddings()
    head_name = next((n for n, m in model.named_modules() if m is head), "lm_head")
    total = sum(p.numel() for p in model.parameters())
    quantized = 0
    if quant.mode != "none":  # bitsandbytes leaves the output head unquantized
        quantized = sum(i * o for n, (i, o) in shapes.items() if n != head_name)
    # prepare_model_for_kbit_training upcasts everything it does not quantize to fp32
    rest_bytes = 4 if quant.mode != "none" else dtype_bytes
    weights = quantized * QUANT_BYTES.get(quant.mode, 0) + (total - quantized) * rest_bytes
    if lora.method == "full":
        return total, total, weights, 0.0
    targets = resolve_targets(model.config, lora, model_cfg.trust_remote_code)
    adapter = sum(lora.r * (i + o) for i, o in targets.layers.values())
    saved = sum(
        p.numel()
        for n, m in model.named_modules()
        if n.rsplit(".", 1)[-1] in lora.modules_to_save
        for p in m.parameters()
    )
    trainable = adapter + saved
    return total + trainable, trainable, weights, trainable * 4.0  # peft keeps adapters in fp32


def activation_bytes(
    lora: LoraConfig, train: TrainConfig, hf, batch: int, seq: int, dtype_bytes: int, on_gpu: bool
) -> float:
    """Tensors autograd keeps for backward, per the Llama-style block (attention + gated MLP)."""
    h = hf.hidden_size
    inter = getattr(hf, "intermediate_size", None) or 4 * h
    heads = hf.num_attention_heads
    kv = h * (getattr(hf, "num_key_value_heads", None) or heads) // heads
    tokens = batch * seq
    per_token = (
        7 * h + 2 * kv + 4 * inter
    )  # norms, q/k/v/o inputs, rotary q/k, attention out, MLP gate/up/act
    if lora.method == "lora" and lora.dropout > 0:
        per_token += 6 * h + inter  # LoRA dropout keeps its own copy of each adapted input
    # Fused attention kernels on GPU keep no seq x seq matrix; CPU attention with a padding mask does.
    scores = 0 if on_gpu else 2 * batch * heads * seq * seq
    per_layer = (tokens * per_token + scores) * dtype_bytes
    if train.gradient_checkpointing:
        return (
            hf.num_hidden_layers * tokens * h * dtype_bytes + per_layer
        )  # layer inputs + one layer recomputed
    return hf.num_hidden_layers * per_layer


def logits_bytes(hf, batch: int, seq: int, selective: bool) -> float:
    """Logits, their fp32 copy for the loss and its gradient: the peak at the end of forward. The selective
    loss puts at most one chunk of trained positions through the head at a time."""
    positions = batch * seq
    if selective and has_plain_head(hf):
        positions = min(positions, HEAD_CHUNK_TOKENS)
    return 3 * positions * hf.vocab_size * 4


def planned_dtype(model_cfg: ModelConfig, on_gpu: bool) -> torch.dtype:
    if model_cfg.dtype != "auto":
        return resolve_dtype(model_cfg.dtype)
    return torch.bfloat16 if on_gpu else torch.float32


@dataclass(frozen=True)
class Setup:
    """The config sections a plan reads."""

    model: ModelConfig
    quant: QuantConfig
    lora: LoraConfig
    train: TrainConfig


def fixed_bytes(setup: Setup, model: nn.Module, on_gpu: bool) -> dict[str, float]:
    """Everything that does not depend on the batch: parameters, their gradients and optimizer states."""
    dtype_bytes = torch.finfo(planned_dtype(setup.model, on_gpu)).bits // 8
    total, trainable, weights, adapter = parameter_bytes(
        model, setup.model, setup.quant, setup.lora, dtype_bytes
    )
    full = setup.lora.method == "full"
    grad_bytes = dtype_bytes if full else 4
    opt_bytes = OPTIMIZER_BYTES[setup.train.optimizer] * (dtype_bytes / 4 if full else 1)
    return {
        "params_total": total,
        "params_trainable": trainable,
        "dtype_bytes": dtype_bytes,
        "weights": weights,
        "adapter": adapter,
        "gradients": trainable * grad_bytes,
        "optimizer": trainable * opt_bytes,
        "overhead": GPU_RUNTIME_BYTES if on_gpu else CPU_RUNTIME_BYTES,
    }


def memory_parts(setup: Setup, hf, fixed: dict[str, float], batch: int, seq: int, on_gpu: bool) -> dict:
    parts = {key: fixed[key] for key in ("weights", "adapter", "gradients", "optimizer")}
    dtype_bytes = int(fixed["dtype_bytes"])
    parts["activations"] = activation_bytes(setup.lora, setup.train, hf, batch, seq, dtype_bytes, on_gpu)
    parts["logits"] = logits_bytes(hf, batch, seq, setup.train.loss == "selective")
    parts["overhead"] = fixed["overhead"]
    return {**parts, "total": sum(parts.values())}


def measured_cpu_flops(seconds: float = 0.3) -> float:
    """This machine's fp32 matmul FLOP/s, measured now: a CPU has no table entry worth trusting."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return n * 2 * 1024**3 / (time.perf_counter() - start)


def training_flops_per_token(setup: Setup, params: int, hf, seq: int) -> float:
    """2N forward + 2N backward through frozen weights (+2N weight grads for full) (+2N recompute)."""
    factor = 6 if setup.lora.method == "full" else 4
    factor += 2 if setup.train.gradient_checkpointing else 0
    attention = 2 * 2 * hf.num_hidden_layers * seq * hf.hidden_size  # QK^T and AV, causal half, fwd
    return factor * params + attention * factor / 2


def sharded_fixed(fixed: dict[str, float], strategy: str, gpus: int, layers: int) -> dict[str, float]:
    """Per device: what the strategy splits across `gpus`, plus the whole layers it gathers to compute."""
    out = dict(fixed)
    if strategy == "ddp":  # DDP's all-reduce buckets hold a second copy of the trainable gradients
        out["gradients"] = 2 * fixed["gradients"]
    if strategy in ("fsdp", "deepspeed-zero2", "deepspeed-zero3"):
        out["gradients"], out["optimizer"] = fixed["gradients"] / gpus, fixed["optimizer"] / gpus
    if strategy in ("fsdp", "deepspeed-zero3"):  # weights sharded; two layers whole at a time (prefetch)
        per_layer = fixed["weights"] / max(layers, 1)
        out["weights"] = min(fixed["weights"], fixed["weights"] / gpus + 2 * per_layer)
        out["adapter"] = fixed["adapter"] / gpus
    return out


def kv_cache_bytes(hf, rows: int, seq: int, dtype_bytes: int) -> float:
    """Keys and values of every layer for `rows` sequences of `seq` tokens."""
    heads = hf.num_attention_heads
    kv_heads = getattr(hf, "num_key_value_heads", None) or heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    return 2 * hf.num_hidden_layers * kv_heads * head_dim * rows * seq * dtype_bytes


def device_budget(device: str) -> tuple[float, float, float]:
    """(memory bytes, FLOP/s, utilisation) of one device: this machine's measured, a GPU's from DEVICES."""
    if device == "cpu":
        import psutil

        return psutil.virtual_memory().total, measured_cpu_flops(), 0.5  # utilisation vs a 1k matmul
    memory, tflops, mfu = DEVICES[device]
    return memory * GIB, tflops * 1e12, mfu


def largest_batch(setup: Setup, hf, fixed: dict[str, float], seq: int, on_gpu: bool, budget: float) -> int:
    fits = 0
    while fits < 1024 and memory_parts(setup, hf, fixed, fits + 1, seq, on_gpu)["total"] <= budget:
        fits += 1
    return fits


def make_plan(
    setup: Setup,
    seq_len: int,
    device: str = "cpu",
    gpus: int = 1,
    strategy: str = "single",
    rollouts: Rollouts | None = None,
) -> Plan:
    """`seq_len` is train.max_length as a number: the CLI resolves auto from the data first (for rollouts:
    prompt plus completion). `strategy` says how `gpus` devices share the work (tuneforge.train.distributed
    names, ZeRO with its stage). `rollouts`: what an online method generates before each step."""
    model = architecture(setup.model)
    batch, seq = setup.train.batch_size, seq_len
    device_bytes, flops, mfu = device_budget(device)
    on_gpu, hf = device != "cpu", model.config
    fixed = sharded_fixed(fixed_bytes(setup, model, on_gpu), strategy, gpus, model.config.num_hidden_layers)
    parts = memory_parts(setup, hf, fixed, batch, seq, on_gpu)
    fits = largest_batch(setup, hf, fixed, seq, on_gpu, FITS * device_bytes)
    if setup.quant.mode != "none":
        mfu *= 0.6  # dequantizing every weight on every forward and backward: an assumption, not yet measured
    per_token = training_flops_per_token(setup, fixed["params_total"], hf, seq)
    # Assumed, not measured: 90% scaling efficiency across devices (bench/scaling.py measures it)
    tokens_per_second = flops * mfu / per_token * gpus * (0.9 if gpus > 1 else 1.0)
    steps = setup.train.max_steps
    sequences = rollouts.sequences if rollouts else batch * setup.train.grad_accumulation
    # An upper bound: every sample filled to max_length. Without max_steps the row count is unknown here.
    total_tokens = steps * sequences * gpus * seq if steps else None
    cache = 0.0
    if rollouts:
        cache = kv_cache_bytes(hf, rollouts.together, seq, planned_dtype(setup.model, on_gpu).itemsize)
        parts["total"] = max(parts["total"], parts["total"] - parts["activations"] - parts["logits"] + cache)
        if total_tokens:  # a forward alone is a third of training's FLOPs per token; generating runs one
            # over each sequence's prompt and new tokens, once per batch of rollouts
            forwards = 1 / rollouts.every + rollouts.forwards
            total_tokens += steps * gpus * rollouts.sequences * seq * forwards / 3
    gib = {key: value / GIB for key, value in parts.items()}
    return Plan(
        device=device,
        gpus=gpus,
        strategy=strategy,
        batch_size=batch,
        seq_len=seq,
        params_total=int(fixed["params_total"]),
        params_trainable=int(fixed["params_trainable"]),
        weights_gib=gib["weights"],
        adapter_gib=gib["adapter"],
        gradients_gib=gib["gradients"],
        optimizer_gib=gib["optimizer"],
        activations_gib=gib["activations"],
        logits_gib=gib["logits"],
        overhead_gib=gib["overhead"],
        total_gib=gib["total"],
        device_gib=device_bytes / GIB,
        max_batch_that_fits=fits,
        tokens_per_second=tokens_per_second,
        run_hours=total_tokens / tokens_per_second / 3600 if total_tokens else None,
        rollout_tokens_per_step=rollouts.sequences * rollouts.new_tokens if rollouts else None,
        rollout_cache_gib=cache / GIB,
    )
