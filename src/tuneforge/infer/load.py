"""Load a finished run for inference: the base model plus the run's adapter, on this process's device,
with the tokenizer (and so the chat template) saved with the adapter. An `hf` export folder
(`tuneforge export`) loads too: the merged weights, with the run's config saved beside them.

    loaded = load_run("runs/quickstart")
    loaded = load_run("exports/quickstart")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.config.loading import load_config
from tuneforge.config.schema import QuantConfig, RunConfig
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


BaseWeights = Literal["trained", "unquantized", "dequantized"]

# What `tuneforge export --format hf` writes beside the merged weights.
EXPORT_INFO = "tuneforge_export.json"
EXPORT_CONFIG = "tuneforge_run.yaml"


def is_hf_export(folder: Path) -> bool:
    return (folder / EXPORT_INFO).is_file() and (folder / "config.json").is_file()


def load_export(folder: Path, base_only: bool = False, trust_remote_code: bool = False) -> LoadedRun:
    """A merged `hf` export: plain transformers weights, prompted exactly as the run was; `base_only`
    loads the base model the run started from instead, for comparisons."""
    config = load_config(folder / EXPORT_CONFIG)
    check_consent(config, folder / EXPORT_CONFIG, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if base_only:
            model, _ = load_base_model(config.model, config.quant)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype="auto", trust_remote_code=config.model.trust_remote_code
            )
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise TuneforgeError(
            f"{folder} cannot be loaded ({type(exc).__name__}: {exc}); is it complete?"
        ) from exc
    if config.quant.mode == "none" or not base_only:  # quantized weights were placed as they loaded
        model.to(process_device())
    model.eval()
    data_format = json.loads((folder / EXPORT_INFO).read_text()).get("data_format")
    return LoadedRun(model, tokenizer, config, ChatEncoder(tokenizer), data_format)


def check_consent(config: RunConfig, source: Path, trust_remote_code: bool) -> None:
    if config.model.trust_remote_code and not trust_remote_code:
        raise TuneforgeError(
            f"{source} sets model.trust_remote_code: true, which runs code shipped with the model. "
            "If you trust it, pass --trust-remote-code."
        )


def check_adapter_covers(
    model: PeftModel, adapter: Path, base_name: str, adapter_name: str = "default"
) -> None:
    """peft leaves a layer the saved adapter has no weights for at its initial no-op, with a warning: an
    adapter saved for a shallower base, or a damaged file, would silently act as the base model."""
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise TuneforgeError(f"{weights} is missing: the adapter folder is incomplete")
    with safe_open(str(weights), "pt") as saved_file:
        saved = set(saved_file.keys())
    # The names peft saves under (DoRA's included).
    adapted = set(get_peft_model_state_dict(model, adapter_name=adapter_name))
    missing = sorted(adapted - saved)
    if missing:
        raise TuneforgeError(
            f"{weights} has no weights for {len(missing)} of the {len(adapted)} adapter tensors this base needs "
            f"(e.g. {missing[0]}): it was saved for another base model than {base_name}, or it is damaged"
        )


def load_run(
    run_dir: str | Path,
    *,
    base_only: bool = False,
    base: BaseWeights = "trained",
    trust_remote_code: bool = False,
) -> LoadedRun:
    """A finished run (or an `hf` export of one). For a base trained in 4 or 8 bits, `base` picks the
    weights under the adapter: as trained (quantized), the original weights reloaded unquantized in the
    compute dtype, or the quantized weights dequantized to it (see tuneforge.export.merge). A run trained
    unquantized has one base. `trust_remote_code` is the user's own consent, which a run directory cannot
    give."""
    if is_hf_export(Path(run_dir)):
        return load_export(Path(run_dir), base_only, trust_remote_code)
    run = RunDir(Path(run_dir))
    check_finished(run)
    config = load_config(run.config)
    dequantize = base == "dequantized" and config.quant.mode != "none"
    if base == "unquantized" and config.quant.mode != "none":
        compute = config.quant.compute_dtype
        model_section = (
            config.model.model_copy(update={"dtype": compute}) if compute != "auto" else config.model
        )
        config = config.model_copy(update={"model": model_section, "quant": QuantConfig()})
    check_consent(config, run.config, trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(run.adapter)  # holds the chat template training used
    try:
        if config.lora.method == "full" and not base_only:
            model = AutoModelForCausalLM.from_pretrained(run.adapter, dtype=resolve_dtype(config.model.dtype))
        else:
            model, _ = load_base_model(config.model, config.quant)
            if dequantize:
                model = model.dequantize()
            if not base_only:
                model = PeftModel.from_pretrained(model, run.adapter)
                check_adapter_covers(model, run.adapter, config.model.name_or_path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise TuneforgeError(
            f"{run.adapter} cannot be loaded ({type(exc).__name__}: {exc}); is it complete, and saved for "
            f"this base model ({config.model.name_or_path})?"
        ) from exc
    if (
        config.quant.mode == "none" or dequantize
    ):  # quantized weights were placed on the device as they loaded
        model.to(process_device())
    model.eval()
    data_format = read_manifest(run.manifest).get("data_format")
    return LoadedRun(model, tokenizer, config, ChatEncoder(tokenizer), data_format)
