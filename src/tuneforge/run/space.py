"""A run whose disk filled up while it wrote a file: the error names the file, the space left and what is
intact (the last complete checkpoint, which --resume continues from).

What was half written (a checkpoint never sealed, the adapter's staging folder) is removed first: it is
never used, and it holds the space that the manifest still needs to record the failure.

    except BaseException as exc:
        raise disk_full_error(run, exc) or exc
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tuneforge.errors import DISK_FULL, TuneforgeError, chain, free_space, megabytes
from tuneforge.run.checkpoints import newest_complete, resume_point, step_of
from tuneforge.run.directory import RunDir
from tuneforge.run.lock import LOCK_NAME
from tuneforge.run.processes import main_process

FULL_WORDS = ("No space left on device", "Disk quota exceeded")  # in the errors of libraries that drop errno
# torch's checkpoint writer says only that a write failed, in its own words and without the errno.
TORCH_WRITER = ("PytorchStreamWriter", "unexpected pos", "basic_ios::clear")


def disk_full_error(run: RunDir, exc: BaseException) -> TuneforgeError | None:
    """The user's error for a write that failed for want of space; None for any other error."""
    reason = None if isinstance(exc, TuneforgeError) else write_failure(exc)
    if reason is None:
        return None
    written = named_file(exc) or newest_file(run.root)
    removed = remove_half_written(run) if main_process() else []
    freed = f" (after removing the half-written {', '.join(removed)})" if removed else ""
    free = megabytes(free_space(run.root))
    return TuneforgeError(
        f"could not write {written}: {reason}; {free} free on that disk{freed}. {intact(run)}"
    )


def write_failure(exc: BaseException) -> str | None:
    """Why the write failed, when `exc` or an error it arose from says the disk is full or torch's writer
    failed; None otherwise."""
    for link in chain(exc):
        if isinstance(link, OSError) and link.errno in DISK_FULL:
            return link.strerror or os.strerror(link.errno)
        text = str(link)
        said = [words for words in FULL_WORDS if words in text]
        if said:
            return said[0]
        if any(mark in text for mark in TORCH_WRITER):
            return f"torch's writer failed, most often for a full disk ({text.strip().splitlines()[0]})"
    return None


def named_file(exc: BaseException) -> str | None:
    return next((str(e.filename) for e in chain(exc) if isinstance(e, OSError) and e.filename), None)


def newest_file(root: Path) -> Path:
    """The file written last: the one the full disk cut off, when the error does not name it."""
    files = [p for p in root.rglob("*") if p.is_file() and p.name != LOCK_NAME]
    return max(files, key=modified, default=root)


def modified(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # removed meanwhile, by the main process clearing what was half written
        return 0


def remove_half_written(run: RunDir) -> list[str]:
    _, unsealed = resume_point(run.checkpoints)  # newer than the newest complete one: never resumed from
    staging = [run.root / ".adapter.tmp"] if (run.root / ".adapter.tmp").is_dir() else []
    folders = [checkpoint for checkpoint, _ in unsealed] + staging
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return [folder.name for folder in folders]


def intact(run: RunDir) -> str:
    checkpoint = newest_complete(run.checkpoints)
    if checkpoint is None:
        return "No checkpoint was complete yet: free space, then start again with --overwrite."
    size = megabytes(sum(p.stat().st_size for p in checkpoint.iterdir() if p.is_file()))
    return (
        f"Intact: the last complete checkpoint, {checkpoint} (step {step_of(checkpoint)}), with the run's "
        f"config, manifest and metrics. Free space (a checkpoint takes {size}), then run the same "
        "`tuneforge train` command with --resume to continue from it."
    )
