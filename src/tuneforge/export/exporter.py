"""`tuneforge export RUN_DIR --out DIR`: merge, write, check, describe, then publish the folder whole.

Reads top to bottom: the destination and the tools the format needs are checked before any work; the
adapter on its base runs the held-out probes (the reference); the format writes the merged weights into a
hidden staging folder beside DIR; a fresh process reads the files back; the check, the model card and the
metadata are written; only then is the staging folder renamed to DIR. Any failure (a bad adapter, a
failed conversion, a check outside tolerance) leaves DIR as it was, and a staging folder left by a killed
export is removed by the next one. What differs between formats is asked of the format object
(`tuneforge.export.formats`), never decided here by its name.

    export_run(Path("runs/quickstart"), Path("exports/q"), ExportOptions(format="gguf"))
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import get_args

import torch
from rich import get_console

from tuneforge.config.loading import load_config
from tuneforge.errors import TuneforgeError
from tuneforge.export.card import model_card
from tuneforge.export.check import (
    CheckResult,
    Outputs,
    Probes,
    compare,
    probes,
    run_reader,
    run_reference,
    summary,
    tolerance,
    within,
)
from tuneforge.export.formats import FORMATS
from tuneforge.export.merge import MergeBase, merge
from tuneforge.export.options import DTYPE_CHOICES, ExportOptions
from tuneforge.infer.load import EXPORT_CONFIG, EXPORT_INFO, LoadedRun, check_finished, load_run
from tuneforge.progress import Phase
from tuneforge.run.directory import RunDir, check_not_protected
from tuneforge.version import __version__


def check_options(options: ExportOptions) -> None:
    choices = {"format": tuple(FORMATS), "dtype": DTYPE_CHOICES}
    # Every format's options are checked, not only the chosen one's: a mistyped --quant on an hf export is
    # still a mistake the user wants to hear about.
    for fmt in FORMATS.values():
        for field, allowed in fmt.choices.items():
            choices[field] = tuple(dict.fromkeys((*choices.get(field, ()), *allowed)))
    choices["merge_base"] = get_args(MergeBase)
    for field, allowed in choices.items():
        value = getattr(options, field)
        if value not in allowed:
            raise TuneforgeError(f"--{field.replace('_', '-')} {value!r}: choose from {', '.join(allowed)}")


def prepare(out: Path, options: ExportOptions, notice) -> None:
    """Everything that can refuse the export without loading a model: options, destination, tools."""
    check_options(options)
    check_destination(out, options.overwrite)
    FORMATS[options.format].check_tools(options, notice)


def check_destination(out: Path, overwrite: bool) -> None:
    check_not_protected(out)
    remove_abandoned(out)
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


def remove_abandoned(out: Path) -> None:
    """Staging folders of exports whose process is gone; an earlier export a killed publish set aside
    goes back to its place."""
    if not out.parent.is_dir():
        return
    for leftover in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = leftover.name.rpartition("-")
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        if kind.endswith(".old") and not out.exists():
            leftover.rename(out)
        elif kind.endswith((".old", ".partial")):
            shutil.rmtree(leftover, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def export_run(run_dir: Path, out: Path, options: ExportOptions, notice=print) -> CheckResult:
    prepare(out, options, notice)
    options = replace(options, name=options.name or out.name)
    fmt = FORMATS[options.format]
    with Phase(get_console(), "running the probes through the trained model"):
        loaded, probe, reference, on_quantized = references(Path(run_dir), options)
    reference_dtype = str(next(loaded.model.parameters()).dtype).removeprefix("torch.")
    model = merge(loaded.model, options.dtype)
    weights = fmt.weights(options, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        fmt.write(model, loaded, staging, options, notice)
        model_file = fmt.model_file(options)
        del model
        loaded.model = None
        free_memory()  # the reader loads its own copy, on the same device
        with Phase(get_console(), "checking the export in a fresh process"):
            exported = run_reader(staging, model_file, probe, loaded.tokenizer)
        limit = tolerance(weights, reference_dtype)
        against_base = compare(reference, exported)
        result = CheckResult(
            format=options.format,
            weights=weights,
            reference_dtype=reference_dtype,
            reader=f"{fmt.reader}, separate process",
            rows=len(probe.inputs),
            tolerance=asdict(limit),
            against_adapter_on_base=against_base,
            against_adapter_on_quantized_base=compare(on_quantized, exported) if on_quantized else None,
            passed=within(against_base, limit),
        )
        describe(staging, RunDir(Path(run_dir)), result, options, loaded.data_format, model_file)
        if not result.passed and not options.allow_mismatch:
            raise TuneforgeError(
                f"the export does not match the model it came from: {summary(result)} (tolerance "
                f"{asdict(limit)}). Nothing was written to {out}; pass --allow-mismatch to keep it anyway."
            )
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def references(run_dir: Path, options: ExportOptions) -> tuple[LoadedRun, Probes, Outputs, Outputs | None]:
    """The adapter on the base the merge uses, with its outputs on the probes; for a base trained
    quantized, first the outputs of the adapter on that base (freed before the next model loads)."""
    run = RunDir(run_dir)
    check_finished(run)
    consent = {"trust_remote_code": options.trust_remote_code, "allow_base_change": options.allow_base_change}
    on_quantized, probe = None, None
    if load_config(run.config).quant.mode != "none":
        trained = load_run(run_dir, **consent)
        probe = probes(trained.encoder, run, trained, options.data_file)
        on_quantized = run_reference(trained, probe)
        del trained
        free_memory()
    loaded = load_run(run_dir, base=options.merge_base, **consent)
    probe = probe or probes(loaded.encoder, run, loaded, options.data_file)
    return loaded, probe, run_reference(loaded, probe), on_quantized


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def describe(
    staging: Path, run: RunDir, result: CheckResult, options: ExportOptions, data_format, model_file
) -> None:
    config = load_config(run.config)
    (staging / "export_check.json").write_text(result.to_json())
    (staging / "README.md").write_text(
        model_card(run, config, FORMATS[options.format], asdict(result), options.license)
    )
    shutil.copyfile(run.config, staging / EXPORT_CONFIG)
    info = {
        "tool": "tuneforge",
        "version": __version__,
        "run": run.root.name,  # the name only: the folder may be published
        "format": options.format,
        "weights": result.weights,
        "gguf_file": model_file,
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
    """Swap the finished folder in: an earlier export (checked by check_destination) is replaced whole,
    and put back if the swap fails."""
    usual_mode(staging)
    previous = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(previous)
    try:
        staging.rename(out)
    except OSError:
        if previous.exists():
            previous.rename(out)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def usual_mode(folder: Path) -> None:
    """Every file as the user's umask makes new files: safetensors writes its file through a private
    temporary one (0600), which would leave the weights alone unreadable to the group a folder is shared with."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)
