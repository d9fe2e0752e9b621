"""Which base model a trained run loads, and whether it is still the one the run was trained on.

When a run starts, its manifest records the base (`base_record`): its fingerprint (tuneforge.model.
fingerprint) and, for a local folder, its absolute path and its path relative to the run directory. Every
later command that loads the base goes through `pinned_base`:

- a local folder is looked for as model.name_or_path is written, from the current folder (taken only if
  its fingerprint matches), then at the recorded path relative to the run directory, then at the recorded
  absolute path. Runs and models moved together, or a shell elsewhere, still find it; a folder found
  nowhere is an error naming the paths tried, never a hub lookup of a name that was a folder.
- a base whose fingerprint differs is refused, naming what changed, unless the user allows the change
  (then a warning says what is loaded instead).
- a hub id loads at the commit it was trained on, when the local cache knew that commit.

Runs recorded before bases were pinned have no record: they load as their config is written. The run's
config.yaml is never rewritten; the model section returned points at the folder found, absolute.

    model = pinned_base(config.model, manifest.get(MANIFEST_KEY), run.root, allow_change=False)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from tuneforge.config.schema import ModelConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.fingerprint import differences, fingerprint, folder_fingerprint, hub_fingerprint

MANIFEST_KEY = "base_model"
ALLOW_FLAG = "--allow-base-change"


def base_record(model: ModelConfig, run_root: Path) -> dict:
    """What the manifest records about the base when a run starts."""
    record = {"name_or_path": model.name_or_path, "fingerprint": fingerprint(model)}
    folder = Path(model.name_or_path).expanduser()
    if folder.is_dir():
        # Not resolved: a symlinked models folder moves with the runs beside it.
        absolute = os.path.abspath(folder)
        record["path"] = absolute
        record["relative_to_run"] = os.path.relpath(absolute, os.path.abspath(run_root))
    return record


def warn(text: str) -> None:
    # stderr: `eval --json` prints its results on stdout
    print(f"warning: {text}", file=sys.stderr)


def pinned_base(
    model: ModelConfig,
    record: dict | None,
    run_root: Path,
    *,
    allow_change: bool,
    notice: Callable[[str], None] = warn,
) -> ModelConfig:
    """The run's model section, pointing at the base to load; raises if that base changed since the run
    was trained, unless `allow_change` (then `notice` says what changed)."""
    if not isinstance(record, dict) or not isinstance(record.get("fingerprint"), dict):
        return model  # trained before bases were recorded
    recorded = record["fingerprint"]
    if recorded.get("kind") != "local":
        return pinned_hub(model, recorded, run_root, allow_change, notice)
    folder, current = locate(model, record, run_root)
    changes = differences(recorded, current)
    if changes:
        report_change(changes, folder, run_root, allow_change, notice)
    # Absolute: runs that reach one folder by different paths share one copy of it (tuneforge serve).
    return model.model_copy(update={"name_or_path": os.path.abspath(Path(folder).expanduser())})


def candidates(model: ModelConfig, record: dict, run_root: Path) -> list[str]:
    """Where the base folder may be, in the order looked at; a place reached twice is named as first met."""
    found = [model.name_or_path]
    if isinstance(record.get("relative_to_run"), str):
        found.append(os.path.normpath(run_root / record["relative_to_run"]))
    if isinstance(record.get("path"), str):
        found.append(record["path"])
    places: dict[str, str] = {}
    for place in found:
        places.setdefault(os.path.realpath(Path(place).expanduser()), place)
    return list(places.values())


def locate(model: ModelConfig, record: dict, run_root: Path) -> tuple[str, dict]:
    """The first folder whose fingerprint matches; else the one the run points at (relative to it, then
    absolute, then as written) with its fingerprint, for report_change to name what differs."""
    places = candidates(model, record, run_root)
    existing: dict[str, dict] = {}
    for place in places:
        folder = Path(place).expanduser()
        if not folder.is_dir():
            continue
        existing[place] = folder_fingerprint(folder, model.gguf_file)
        if not differences(record["fingerprint"], existing[place]):
            return place, existing[place]
    for place in [*places[1:], places[0]]:
        if place in existing:
            return place, existing[place]
    written = places[0] if Path(places[0]).expanduser().is_absolute() else f"{places[0]} (from {Path.cwd()})"
    tried = ", ".join([written, *places[1:]])
    raise TuneforgeError(
        f"the base model of {run_root} is not found: model.name_or_path {model.name_or_path!r} was a local "
        f"folder when the run was trained, and none of these exists now: {tried}. Put the model folder back, "
        "or run the command from the folder the run was trained in."
    )


def pinned_hub(
    model: ModelConfig, recorded: dict, run_root: Path, allow_change: bool, notice: Callable[[str], None]
) -> ModelConfig:
    changes = differences(recorded, hub_fingerprint(model.name_or_path, model.revision))
    if changes:
        report_change(changes, model.name_or_path, run_root, allow_change, notice)
        return model
    commit = recorded.get("commit")
    if isinstance(commit, str) and commit and model.revision != commit:
        return model.model_copy(update={"revision": commit})
    return model


def report_change(
    changes: list[tuple[str, str]],
    folder: str,
    run_root: Path,
    allow_change: bool,
    notice: Callable[[str], None],
) -> None:
    (first, why), rest = changes[0], changes[1:]
    text = f"{os.path.join(folder, first) if first else folder} changed since {run_root} was trained ({why})"
    if rest:
        text += "; so did " + ", ".join(f"{os.path.join(folder, name)} ({how})" for name, how in rest)
    if allow_change:
        notice(f"{text}; loading it anyway ({ALLOW_FLAG})")
        return
    raise TuneforgeError(
        f"{text}. Put the base it was trained on back; if you meant to use another base, pass {ALLOW_FLAG}"
    )
