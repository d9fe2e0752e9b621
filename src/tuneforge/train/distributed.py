"""The `distributed:` config section turned into the Trainer's own arguments: DDP, FSDP or DeepSpeed ZeRO.

The processes themselves come from torchrun (`tuneforge train --nproc N` runs it in process), `accelerate
launch` or SLURM; the Trainer (through accelerate) wraps the model for the strategy. This module only
chooses the arguments and refuses the combinations that cannot work, before anything loads.

    strategy_arguments(DistributedConfig(strategy="fsdp"), world=8, cuda=True, layer_classes=["LlamaDecoderLayer"])
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from tuneforge.config.schema import DistributedConfig
from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class Layout:
    """How the work is split: shown at start and recorded in the manifest."""

    strategy: str  # single, ddp, fsdp, deepspeed
    world_size: int
    per_device_batch: int
    grad_accumulation: int

    @property
    def global_batch(self) -> int:
        return self.per_device_batch * self.grad_accumulation * self.world_size

    def describe(self) -> str:
        processes = "1 process" if self.world_size == 1 else f"{self.world_size} processes ({self.strategy})"
        return (
            f"{processes} · global batch {self.global_batch} = {self.per_device_batch} per device × "
            f"{self.grad_accumulation} accumulation × {self.world_size} process{'es' if self.world_size > 1 else ''}"
        )

    def record(self) -> dict:
        return {
            "strategy": self.strategy,
            "world_size": self.world_size,
            "per_device_batch": self.per_device_batch,
            "grad_accumulation": self.grad_accumulation,
            "global_batch": self.global_batch,
        }


def resolve_strategy(distributed: DistributedConfig, world: int) -> str:
    if world == 1:
        return "single"
    return "ddp" if distributed.strategy == "auto" else distributed.strategy


def check_strategy(distributed: DistributedConfig, *, world: int, cuda: bool) -> None:
    """Refuse before loading anything: a strategy the machine or the installed packages cannot run."""
    strategy = resolve_strategy(distributed, world)
    if strategy in ("fsdp", "deepspeed") and not cuda:
        raise TuneforgeError(
            f"distributed.strategy={strategy} needs CUDA GPUs; on CPUs use strategy auto (DDP over gloo), "
            "or run on one process"
        )
    if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise TuneforgeError(
            "distributed.strategy=deepspeed needs the deepspeed package: pip install 'tuneforge[deepspeed]'"
        )


def strategy_arguments(distributed: DistributedConfig, *, world: int, layer_classes: list[str]) -> dict:
    """TrainingArguments keywords for the strategy (none for one process)."""
    strategy = resolve_strategy(distributed, world)
    if strategy == "ddp":
        # LoRA trains every adapter weight at every step: no search for unused parameters (it costs a pass)
        return {"ddp_find_unused_parameters": False}
    if strategy == "fsdp":
        return {"fsdp": True, "fsdp_config": fsdp_config(distributed, layer_classes)}
    if strategy == "deepspeed":
        return {"deepspeed": zero_config(distributed)}
    return {}


def fsdp_config(distributed: DistributedConfig, layer_classes: list[str]) -> dict:
    """Full shard, one FSDP unit per transformer layer. FSDP2 shards every parameter on its own, so frozen
    base weights (4-bit ones included) and trainable adapters mix in one unit, which FSDP1 needed
    use_orig_params for; the adapter is gathered into one ordinary file at the end."""
    return {
        "version": 2,
        "reshard_after_forward": True,  # full shard: weights gathered for a layer's use only
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": layer_classes,
        "cpu_offload": distributed.fsdp_cpu_offload,
        "state_dict_type": "FULL_STATE_DICT",
    }


def zero_config(distributed: DistributedConfig) -> dict:
    """A DeepSpeed config whose batch, precision and clipping follow the Trainer's arguments ("auto")."""
    offload = {"device": "cpu", "pin_memory": True} if distributed.zero_offload else {"device": "none"}
    zero: dict = {
        "stage": distributed.zero_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "offload_optimizer": offload,
    }
    if distributed.zero_stage == 3:
        # one full copy of the (small) adapter weights when saving, not a shard per rank
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
    }
