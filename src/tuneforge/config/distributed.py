"""Config section `distributed`: how several processes share one training run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.config.section import Section


class DistributedConfig(Section):
    """How several processes share the training (tuneforge train --nproc N, torchrun, accelerate launch).
    One process ignores this section."""

    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto",
        description="auto: DDP (a full model copy per process). fsdp: weights, gradients and optimizer state "
        "sharded, one unit per transformer layer (QLoRA included). deepspeed: ZeRO (pip install "
        "'tuneforge[deepspeed]'). fsdp and deepspeed need CUDA GPUs.",
    )
    fsdp_cpu_offload: bool = Field(
        False,
        description="fsdp: keep the sharded parameters in CPU memory between uses (slower, less GPU memory).",
    )
    zero_stage: Literal[2, 3] = Field(
        2, description="deepspeed: 2 shards gradients and optimizer state; 3 also shards the weights."
    )
    zero_offload: bool = Field(False, description="deepspeed: keep the optimizer state in CPU memory.")
