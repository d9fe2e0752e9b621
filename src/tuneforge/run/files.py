"""Files tuneforge writes for the user: the folder is checked before any work, and the file is written
under a temporary name and renamed, so a crash never leaves half a file and nothing computed is lost to
a bad path. A symlink is written through (its target is replaced, the link stays); a named pipe, socket
or device is refused, since renaming onto it would replace it with a regular file.

    check_writable(Path("out/predictions.jsonl"))   # before generating
    write_atomically(Path("out/predictions.jsonl"), text)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tuneforge.errors import TuneforgeError


def check_writable(path: Path) -> None:
    target = Path(os.path.realpath(path))  # where the bytes land: a symlink's target
    folder = target.parent
    if target.is_dir():
        raise TuneforgeError(f"{path} is a folder; give a file name, e.g. {path / 'predictions.jsonl'}")
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        raise TuneforgeError(
            f"{path} is not a regular file (a named pipe, socket or device); give a file name to write"
        )
    if not folder.is_dir():
        raise TuneforgeError(f"{path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise TuneforgeError(f"{path}: the folder {folder} is not writable")


def write_atomically(path: Path, text: str) -> None:
    check_writable(path)
    target = Path(os.path.realpath(path))
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, target)
