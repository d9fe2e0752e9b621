"""Checkpoints that are either complete or never used.

The Trainer writes `checkpoints/checkpoint-N/`; when it is done, `seal` flushes every file to disk and then
writes `tuneforge-complete.json` (the name and size of each file) by an atomic rename. A checkpoint
without that seal, with a required file missing, or with a file shorter than sealed, was cut off by a
crash: it is named, skipped and removed, and the newest complete one is resumed. A resume never starts
with a fresh optimizer or schedule because their files were missing. Old checkpoints are rotated only
after the new one is sealed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

SEAL = "tuneforge-complete.json"
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def step_of(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


def checkpoint_dirs(root: Path) -> list[Path]:
    """Oldest first."""
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    return sorted(found, key=step_of)


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal(checkpoint: Path) -> None:
    files = {p.name: p.stat().st_size for p in sorted(checkpoint.iterdir()) if p.is_file() and p.name != SEAL}
    for name in files:
        fsync(checkpoint / name)
    temporary = checkpoint / f".{SEAL}.tmp"
    temporary.write_text(json.dumps({"step": step_of(checkpoint), "files": files}, indent=1))
    fsync(temporary)
    os.replace(temporary, checkpoint / SEAL)
    fsync(checkpoint)


def problem(checkpoint: Path) -> str | None:
    """Why this checkpoint cannot be resumed from, or None when it is complete."""
    try:
        sealed = json.loads((checkpoint / SEAL).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return "it was never sealed (the process stopped while writing it)"
    weights = [name for name in sealed if name.endswith(".safetensors")]
    missing = [name for name in REQUIRED if name not in sealed] + ([] if weights else ["the weights"])
    if missing:
        return f"it has no {', '.join(missing)}"
    for name, size in sealed.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is truncated ({path.stat().st_size} of {size} bytes)"
    return None


def newest_complete(root: Path) -> Path | None:
    complete = [c for c in checkpoint_dirs(root) if problem(c) is None]
    return complete[-1] if complete else None


def resume_point(root: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint, and the newer incomplete ones with what is wrong with each.
    Reads only: the caller removes the incomplete ones once the resume is sure to go ahead."""
    incomplete = []
    for checkpoint in reversed(checkpoint_dirs(root)):
        reason = problem(checkpoint)
        if reason is None:
            return checkpoint, incomplete
        incomplete.append((checkpoint, reason))
    return None, incomplete


def remove_incomplete(incomplete: list[tuple[Path, str]], notice: Callable[[str], None]) -> None:
    for checkpoint, reason in incomplete:
        notice(f"skipping {checkpoint}: {reason}; it is removed and the one before is used")
        shutil.rmtree(checkpoint)


def rotate(root: Path, keep: int | None, protect: Path | None = None) -> None:
    """Delete the oldest complete checkpoints beyond `keep`. The newest complete one always stays, and so
    does `protect` (the best checkpoint, when a best metric is tracked)."""
    if keep is None:
        return
    complete = [c for c in checkpoint_dirs(root) if problem(c) is None]
    protected = protect.resolve() if protect else None
    removable = [c for c in complete[:-1] if c.resolve() != protected]
    for old in removable[: max(len(complete) - keep, 0)]:
        shutil.rmtree(old)
