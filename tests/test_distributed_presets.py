"""The FSDP and DeepSpeed presets, as far as this CPU allows, and the combinations refused up front.

FSDP itself does not run here: accelerate 1.15 switches a process group to FSDP only on GPU-type devices
(accelerate/state.py: a MULTI_CPU group keeps DDP and drops the FSDP plugin), although torch's own
fully_shard works on CPU. So the presets are checked as the Trainer and accelerate receive them (the
plugin is built from them here), and the real runs are `gpu` tests that need two CUDA devices.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.utils import FullyShardedDataParallelPlugin
from conftest import quick_config, write_jsonl
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import config_to_yaml, validate_config
from tuneforge.config.schema import DistributedConfig, TrainConfig
from tuneforge.errors import TuneforgeError
from tuneforge.train.distributed import Layout, check_strategy, strategy_arguments, zero_config
from tuneforge.train.trainer import training_arguments

LAYERS = ["LlamaDecoderLayer"]


def arguments(distributed: DistributedConfig, world: int = 2):
    strategy = strategy_arguments(distributed, world=world, layer_classes=LAYERS)
    return training_arguments(
        TrainConfig(), output_dir=Path("unused"), dtype=torch.float32, has_eval=False, report_to=[],
        strategy_args=strategy,
    )  # fmt: skip


def test_fsdp_preset_is_full_shard_per_transformer_layer_with_optional_offload():
    for offload in (False, True):
        args = arguments(DistributedConfig(strategy="fsdp", fsdp_cpu_offload=offload))
        plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)  # what the Trainer builds
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # full shard
        assert plugin.transformer_cls_names_to_wrap == LAYERS
        assert "TRANSFORMER_BASED_WRAP" in str(args.fsdp_plugin_args["auto_wrap_policy"])
        assert (type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy") is offload
        assert "FULL_STATE_DICT" in str(plugin.state_dict_type), "the adapter is saved whole, in one file"


def test_ddp_preset_skips_the_unused_parameter_search_and_one_process_gets_nothing():
    assert arguments(DistributedConfig(strategy="auto")).ddp_find_unused_parameters is False
    assert strategy_arguments(DistributedConfig(strategy="fsdp"), world=1, layer_classes=LAYERS) == {}


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_presets_shard_what_their_stage_says_and_follow_the_trainer(stage):
    config = zero_config(DistributedConfig(strategy="deepspeed", zero_stage=stage, zero_offload=True))
    zero = config["zero_optimization"]
    assert zero["stage"] == stage and zero["offload_optimizer"]["device"] == "cpu"
    assert zero.get("stage3_gather_16bit_weights_on_model_save", False) is (stage == 3)
    # batch, accumulation, precision and clipping come from the Trainer's arguments, never twice
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert config[key] == "auto"
    assert strategy_arguments(DistributedConfig(strategy="deepspeed"), world=2, layer_classes=[]) == {
        "deepspeed": zero_config(DistributedConfig(strategy="deepspeed"))
    }


def test_qlora_under_fsdp_stores_4bit_weights_in_the_compute_dtype():
    from tuneforge.config.schema import QuantConfig
    from tuneforge.model.load import quantization_config

    sharded = quantization_config(QuantConfig(mode="4bit"), torch.bfloat16, for_fsdp=True)
    single = quantization_config(QuantConfig(mode="4bit"), torch.bfloat16)
    assert sharded.bnb_4bit_quant_storage == torch.bfloat16
    assert single.bnb_4bit_quant_storage == torch.uint8, "one process keeps bitsandbytes' own packing"


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_a_sharding_strategy_on_cpus_is_refused_before_anything_loads(strategy):
    with pytest.raises(TuneforgeError, match=f"strategy={strategy} needs CUDA GPUs"):
        check_strategy(DistributedConfig(strategy=strategy), world=2, cuda=False)
    check_strategy(DistributedConfig(strategy=strategy), world=1, cuda=False)  # one process ignores it
    check_strategy(DistributedConfig(strategy="ddp"), world=2, cuda=False)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_deepspeed_without_the_package_says_how_to_install_it():
    with pytest.raises(TuneforgeError, match=r"pip install 'tuneforge\[deepspeed\]'"):
        check_strategy(DistributedConfig(strategy="deepspeed"), world=2, cuda=True)


def test_combinations_that_cannot_work_are_config_errors(tiny_models):
    base = {"model": {"name_or_path": str(tiny_models("llama"))}, "data": {"path": "train.jsonl"}}
    with pytest.raises(TuneforgeError, match="FSDP cannot shard bitsandbytes 8-bit weights"):
        validate_config({**base, "quant": {"mode": "8bit"}, "distributed": {"strategy": "fsdp"}})
    with pytest.raises(
        TuneforgeError, match="eval.during_training generates text, which needs whole weights"
    ):
        validate_config({**base, "eval": {"during_training": True}, "distributed": {"strategy": "fsdp"}})
    sharded = {"strategy": "deepspeed", "zero_stage": 3}
    with pytest.raises(TuneforgeError, match="needs whole weights"):
        validate_config({**base, "eval": {"during_training": True}, "distributed": sharded})
    validate_config({**base, "quant": {"mode": "4bit"}, "distributed": {"strategy": "fsdp"}})  # QLoRA + FSDP


def test_layout_counts_every_process_in_the_global_batch():
    layout = Layout("ddp", world_size=4, per_device_batch=2, grad_accumulation=8)
    assert layout.global_batch == 64
    assert layout.describe() == (
        "4 processes (ddp) · global batch 64 = 2 per device × 8 accumulation × 4 processes"
    )


def test_nproc_inside_a_launched_process_is_refused(tiny_models, demo_files, tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(quick_config(tiny_models("llama"), *demo_files)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(
        app, ["train", str(path), "--nproc", "2", "--output-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "drop --nproc" in result.output
    assert not (tmp_path / "r").exists()


needs_two_gpus = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="FSDP and DeepSpeed run on CUDA devices only; this needs two"
)


@pytest.mark.gpu
@needs_two_gpus
@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_fsdp_on_two_gpus_trains_one_adapter(tiny_models, tmp_path, quant):
    rows = [{"prompt": f"count the lines in f{i}.txt", "completion": f"wc -l f{i}.txt"} for i in range(32)]
    config = quick_config(
        tiny_models("llama"), write_jsonl(tmp_path / "train.jsonl", rows),
        model={"dtype": "bfloat16"}, quant={"mode": quant}, distributed={"strategy": "fsdp"},
    )  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config))
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "train",
        str(path),
        "--nproc",
        "2",
        "--output-dir",
        str(tmp_path / "r"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["processes"]["strategy"] == "fsdp"
    assert (tmp_path / "r" / "adapter" / "adapter_model.safetensors").is_file()
