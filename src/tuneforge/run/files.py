"""Files tuneforge writes for the user: the folder is checked before any work, and the file is written
under a temporary name and renamed, so a crash never leaves half a file and nothing computed is lost to
a bad path.

    check_writable(Path("out/predictions.jsonl"))   # before generating
    write_atomically(Path("out/predictions.jsonl"), text)
"""

from __future__ import annotations

import os
from pathlib import Path

from tuneforge.errors import TuneforgeError


def check_writable(path: Path) -> None:
    folder = path.parent
    if path.is_dir():
        raise TuneforgeError(f"{path} is a folder; give a file name, e.g. {path / 'predictions.jsonl'}")
    if not folder.is_dir():
        raise TuneforgeError(f"{path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise TuneforgeError(f"{path}: the folder {folder} is not writable")


def write_atomically(path: Path, text: str) -> None:
    check_writable(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
