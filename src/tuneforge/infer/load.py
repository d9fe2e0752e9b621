"""Load a finished run for inference: the base model plus the run's adapter, on this process's device,
with the tokenizer (and so the chat template) saved with the adapter.

    loaded = load_run("runs/quickstart")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.config.loading import load_config
from tuneforge.config.schema import RunConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_base_model, process_device, resolve_dtype
from tuneforge.run.directory import RunDir
from tuneforge.run.manifest import read_manifest


def check_finished(run: RunDir) -> None:
    if not run.config.is_file() or not run.manifest.is_file():
        raise TuneforgeError(
            f"{run.root} is not a finished tuneforge run (needs config.yaml and manifest.json)"
        )
    status = run.status()
    if status != "finished" or not run.adapter.is_dir():
        error = read_manifest(run.manifest).get("error")
        raise TuneforgeError(
            f"{run.root} did not finish (status: {status}{': ' + error if error else ''}), so it has no adapter "
            "to use. Resume it with `tuneforge train CONFIG --output-dir " + str(run.root) + " --resume`."
        )


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: object
    config: RunConfig
    encoder: ChatEncoder
    data_format: str | None  # the row shape training detected, for reading input files the same way


def load_run(run_dir: str | Path, *, base_only: bool = False, trust_remote_code: bool = False) -> LoadedRun:
    """A finished run; `trust_remote_code` is the user's own consent, which a run directory cannot give."""
    run = RunDir(Path(run_dir))
    check_finished(run)
    config = load_config(run.config)
    if config.model.trust_remote_code and not trust_remote_code:
        raise TuneforgeError(
            f"{run.config} sets model.trust_remote_code: true, which runs code shipped with the model. "
            "If you trust it, pass --trust-remote-code."
        )
    tokenizer = AutoTokenizer.from_pretrained(run.adapter)  # holds the chat template training used
    try:
        if config.lora.method == "full" and not base_only:
            model = AutoModelForCausalLM.from_pretrained(run.adapter, dtype=resolve_dtype(config.model.dtype))
        else:
            model, _ = load_base_model(config.model, config.quant)
            if not base_only:
                model = PeftModel.from_pretrained(model, run.adapter)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise TuneforgeError(
            f"{run.adapter} cannot be loaded ({type(exc).__name__}: {exc}); is it complete?"
        ) from exc
    if config.quant.mode == "none":  # quantized weights were placed on the device as they loaded
        model.to(process_device())
    model.eval()
    data_format = read_manifest(run.manifest).get("data_format")
    return LoadedRun(model, tokenizer, config, ChatEncoder(tokenizer), data_format)
