"""What `--resume` accepts: the same config (only length and logging keys may change), the same data
files byte for byte, the same base model (unless allowed), and a run that still has steps to train."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError

from tuneforge.config.loading import config_to_yaml
from tuneforge.config.schema import RunConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.base_pin import MANIFEST_KEY, pinned_base
from tuneforge.run.directory import RunDir
from tuneforge.run.manifest import read_manifest
from tuneforge.train.distributed import Layout

# Keys that may change between a run and its --resume; anything else would silently mix two experiments.
RESUMABLE_CHANGES = {"max_steps", "epochs", "eval_steps", "save_steps", "logging_steps", "save_total_limit"}
# How the global batch is split may change (another process count), as long as the global batch stays: the
# same samples then make each step (check_same_global_batch).
BATCH_SPLIT = {"batch_size", "grad_accumulation"}


def saved_train_section(run: RunDir) -> dict:
    return (yaml.safe_load(run.config.read_text()) or {}).get("train", {}) if run.config.is_file() else {}


def with_defaults(saved: dict) -> dict:
    """A run's saved config with the keys added since it was written at their defaults (a run started
    by an older tuneforge stays resumable); as written when it does not validate any more."""
    try:
        return yaml.safe_load(config_to_yaml(RunConfig.model_validate(saved)))
    except ValidationError:
        return saved


def check_resumable(run: RunDir, config: RunConfig) -> list[str]:
    """Before any work: the config matches the run's, and a finished run is only resumed to train longer.
    Returns notes on what an allowed change does."""
    if not run.config.is_file():
        return []
    saved = with_defaults(yaml.safe_load(run.config.read_text()) or {})
    current = yaml.safe_load(config_to_yaml(config))
    changed = [
        f"{section}.{key}"
        for section, values in current.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if saved.get(section, {}).get(key) != value
        and not (section == "train" and key in RESUMABLE_CHANGES | BATCH_SPLIT)
        and section != "distributed"  # how the processes share the work, not what is trained
        and section != "eval"  # how a run is scored, not what it trains
    ]
    if changed:
        raise TuneforgeError(
            f"--resume with a different config: {', '.join(changed)} changed since {run.config} was written. "
            "Resume with the same settings, or start a new run with --overwrite or --output-dir."
        )
    if run.status() == "finished" and not trains_longer(saved.get("train", {}), config, run):
        step = read_manifest(run.manifest).get("global_step")
        raise TuneforgeError(
            f"{run.root} already finished (step {step}); there is nothing to resume. To train longer, raise "
            "train.max_steps or train.epochs with --resume; to start again, use --overwrite."
        )
    return [
        f"train.{key} changed from {saved['train'].get(key)} to {current['train'][key]}: the learning-rate "
        "schedule is recomputed for the new length, so the result differs from a run set up that way at the start"
        for key in ("max_steps", "epochs")
        if saved.get("train", {}).get(key) != current["train"][key]
    ]


def resume_base(
    run: RunDir, config: RunConfig, allow_base_change: bool, notice: Callable[[str], None]
) -> RunConfig:
    """The config to load the model from: its model section points at the base the run was trained on,
    found wherever the run or the shell has moved, and refuses a base that changed since unless allowed
    (tuneforge.model.base_pin). The run's config.yaml keeps the section as it was written."""
    record = read_manifest(run.manifest).get(MANIFEST_KEY)
    model = pinned_base(config.model, record, run.root, allow_change=allow_base_change, notice=notice)
    return config.model_copy(update={"model": model})


def trains_longer(saved_train: dict, config: RunConfig, run: RunDir) -> bool:
    done = read_manifest(run.manifest).get("global_step") or 0
    if config.train.max_steps is not None:
        return config.train.max_steps > done
    return saved_train.get("max_steps") is None and config.train.epochs > saved_train.get("epochs", 0)


def check_same_data(run: RunDir, file_hashes: dict[Path, str]) -> None:
    """The data files read now are the ones the run started with, byte for byte."""
    recorded = {entry["path"]: entry["sha256"] for entry in read_manifest(run.manifest).get("data_files", [])}
    for path, digest in file_hashes.items():
        before = recorded.get(str(path))
        if before is not None and before != digest:
            raise TuneforgeError(
                f"--resume: {path} changed since the run started (sha256 {before[:12]}… is now {digest[:12]}…). "
                "Resuming would train on other data; restore the file, or start a new run with --overwrite."
            )
    missing = sorted(set(recorded) - {str(p) for p in file_hashes})
    if missing:
        raise TuneforgeError(
            f"--resume: the run started from {', '.join(missing)}, which this config no longer reads"
        )


def check_same_global_batch(run: RunDir, layout: Layout) -> None:
    """Per-device batch × accumulation × processes must stay what the run started with, and checkpoints
    written by FSDP or DeepSpeed (sharded optimizer state, their own layout) resume only under the same."""
    manifest = read_manifest(run.manifest)
    started = manifest.get("processes", {}).get("strategy", "single")
    sharded = {"fsdp", "deepspeed"}
    if started != layout.strategy and sharded & {started, layout.strategy}:
        raise TuneforgeError(
            f"--resume: the run's checkpoints were written by strategy {started}, and {layout.strategy} cannot "
            f"read them; resume with distributed.strategy: {started}"
        )
    before = manifest.get("processes", {}).get("global_batch")
    if before is None:  # a run from before processes were recorded: it ran on one process
        saved = saved_train_section(run)
        before = saved.get("batch_size", layout.per_device_batch) * saved.get("grad_accumulation", 1)
    if before != layout.global_batch:
        needed = before / (layout.per_device_batch * layout.world_size)
        advice = (
            f"set train.grad_accumulation={int(needed)}"
            if needed == int(needed) and needed >= 1
            else "choose train.batch_size and train.grad_accumulation that give it"
        )
        raise TuneforgeError(
            f"--resume: the run trained with a global batch of {before}, now it would be "
            f"{layout.global_batch} ({layout.describe()}). Each step would then see other samples; "
            f"{advice}, or resume with the process count it started with."
        )
