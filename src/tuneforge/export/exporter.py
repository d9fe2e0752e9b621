"""`tuneforge export RUN_DIR --out DIR`: merge, write, check, describe, then publish the folder whole.

Reads top to bottom: the destination is checked before any work; the adapter on its unquantized base runs
the held-out probes (the reference); the merged weights are written as an `hf` folder (and converted to
GGUF for `gguf` and `ollama`) in a hidden staging folder beside DIR; a fresh process reads the files back;
the check, the model card and the metadata are written; only then is the staging folder renamed to DIR.
Any failure (a bad adapter, a failed conversion, a check outside tolerance) leaves DIR as it was.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tuneforge import __version__
from tuneforge.config.loading import load_config
from tuneforge.errors import TuneforgeError
from tuneforge.export.card import model_card
from tuneforge.export.check import (
    CheckResult,
    compare,
    probes,
    run_reader,
    run_reference,
    summary,
    tolerance,
    within,
)
from tuneforge.export.gguf_convert import convert
from tuneforge.export.merge import MergeBase, load_unmerged, merge
from tuneforge.export.ollama import modelfile
from tuneforge.infer.load import EXPORT_CONFIG, EXPORT_INFO, load_run
from tuneforge.run.directory import RunDir, check_not_protected

Format = Literal["hf", "gguf", "ollama"]


@dataclass(frozen=True)
class ExportOptions:
    format: Format = "hf"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # hf weights; auto keeps the run's
    quant: str = "f16"  # GGUF type for gguf and ollama
    merge_base: MergeBase = "unquantized"  # for a base trained in 4/8 bits; see tuneforge.export.merge
    data_file: Path | None = None  # prompts for the check instead of the run's eval split
    allow_mismatch: bool = False
    overwrite: bool = False
    license: str | None = None
    trust_remote_code: bool = False


def check_destination(out: Path, overwrite: bool) -> None:
    check_not_protected(out)
    if out.exists() and not out.is_dir():
        raise TuneforgeError(f"{out} is a file: choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / EXPORT_INFO).is_file():
        raise TuneforgeError(
            f"{out} holds files that are not a tuneforge export; nothing was changed. Choose another --out."
        )
    if not overwrite:
        raise TuneforgeError(f"{out} holds an earlier export; pass --overwrite to replace it")


def export_run(run_dir: Path, out: Path, options: ExportOptions, notice=print) -> CheckResult:
    check_destination(out, options.overwrite)
    run = RunDir(run_dir)
    unmerged = load_unmerged(run_dir, options.merge_base, options.trust_remote_code)
    loaded = unmerged.loaded
    probe = probes(loaded.encoder, run, loaded, options.data_file)
    reference = run_reference(loaded, probe)
    on_quantized = None
    if unmerged.quantized_training:
        trained = load_run(run_dir, trust_remote_code=options.trust_remote_code)
        on_quantized = run_reference(trained, probe)
        del trained
    model = merge(unmerged, options.dtype)
    weights = options.quant if options.format != "hf" else str(model.dtype).removeprefix("torch.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        gguf_name = write_model(model, loaded, staging, options, notice)
        del model, unmerged
        loaded.model = None
        gc.collect()
        exported = run_reader(staging, gguf_name, probe, loaded.tokenizer)
        against_base = compare(reference, exported)
        limit = tolerance(options.format, weights)
        result = CheckResult(
            format=options.format,
            weights=weights,
            reader=f"transformers{' GGUF loader' if gguf_name else ''}, separate process",
            rows=len(probe.inputs),
            tolerance=asdict(limit),
            against_adapter_on_base=against_base,
            against_adapter_on_quantized_base=compare(on_quantized, exported) if on_quantized else None,
            passed=within(against_base, limit),
        )
        describe(staging, run, result, options, loaded.data_format, gguf_name)
        if not result.passed and not options.allow_mismatch:
            raise TuneforgeError(
                f"the export does not match the model it came from: {summary(result)} (tolerance {asdict(limit)}). "
                f"Nothing was written to {out}; pass --allow-mismatch to keep it anyway."
            )
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def write_model(model, loaded, staging: Path, options: ExportOptions, notice) -> str | None:
    """The merged model as an hf folder in `staging`, or converted to GGUF there; returns the GGUF's name."""
    hf_dir = staging if options.format == "hf" else staging / ".hf"
    hf_dir.mkdir(parents=True)
    tokenizer = loaded.tokenizer
    generation = model.generation_config
    eos = generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    generation.eos_token_id = [
        tokenizer.eos_token_id,
        *(i for i in eos if i not in (None, tokenizer.eos_token_id)),
    ]
    generation.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(hf_dir, safe_serialization=True)
    tokenizer.save_pretrained(hf_dir)
    if options.format == "hf":
        return None
    gguf_name = f"model-{options.quant}.gguf"
    convert(hf_dir, staging / gguf_name, options.quant, notice)
    shutil.rmtree(hf_dir)
    if options.format == "ollama":
        (staging / "Modelfile").write_text(
            modelfile(loaded.encoder, gguf_name, loaded.config.data.system_prompt)
        )
    return gguf_name


def describe(
    staging: Path, run: RunDir, result: CheckResult, options: ExportOptions, data_format, gguf_name
) -> None:
    config = load_config(run.config)
    (staging / "export_check.json").write_text(result.to_json())
    (staging / "README.md").write_text(
        model_card(run, config, options.format, asdict(result), options.license)
    )
    shutil.copyfile(run.config, staging / EXPORT_CONFIG)
    info = {
        "tool": "tuneforge",
        "version": __version__,
        "run_dir": str(run.root.resolve()),
        "format": options.format,
        "weights": result.weights,
        "gguf_file": gguf_name,
        "data_format": data_format,
        "merged": merge_note(config.quant.mode, options.merge_base),
        "check_passed": result.passed,
    }
    (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")


def merge_note(quant_mode: str, merge_base: MergeBase) -> str:
    if quant_mode == "none":
        return "adapter merged into the base"
    if merge_base == "dequantized":
        return f"adapter merged into the {quant_mode} training base dequantized to the compute dtype"
    return f"base trained in {quant_mode}, reloaded unquantized in the compute dtype, adapter merged into it"


def publish(staging: Path, out: Path) -> None:
    """Swap the finished folder in: an earlier export (checked by check_destination) is replaced whole."""
    previous = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(previous)
    staging.rename(out)
    shutil.rmtree(previous, ignore_errors=True)
