"""GPU checks (skipped without CUDA): QLoRA with bf16 compute, and the GPU fast path's defaults."""

import pytest
import torch
from conftest import quick_config

from tuneforge.train.run import run_finetune
from tuneforge.train.trainer import use_packing

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_qlora_trains_in_bf16_on_gpu(tiny_models, demo_files, tmp_path):
    from transformers import TrainerCallback

    config = quick_config(tiny_models("llama"), *demo_files, quant={"mode": "4bit"}, train={"max_steps": 6})
    seen = {}

    class Inspect(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            import bitsandbytes as bnb

            layer = next(m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
            seen.update(bf16=args.bf16, compute=layer.compute_dtype, device=layer.weight.device.type)

    result = run_finetune(config, tmp_path / "qlora-gpu", extra_callbacks=[Inspect()])
    assert seen == {"bf16": torch.cuda.is_bf16_supported(), "compute": torch.bfloat16, "device": "cuda"}
    assert result.eval_after["eval_loss"] < result.eval_before["eval_loss"]
    assert use_packing(config.train), "padding-free packing is the GPU default"
