"""GGUF files as base models: transformers' own `gguf_file=` loading (weights dequantized to the compute
dtype, the tokenizer built from the file's metadata).

Some GGUF files declare special-token ids past the end of their vocabulary (llama2.c exports set the pad and
separator ids to 4294967295), which makes transformers fail ("Padding_idx must be within num_embeddings").
Those keys are left out of a cached copy made with gguf's own `gguf_new_metadata` tool, with a warning; the
user's file is never changed.

    model:
      name_or_path: ../shared/models/stories260K-gguf
      gguf_file: stories260K.gguf
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tuneforge.errors import TuneforgeError

TOKEN_ID_KEY = ("tokenizer.ggml.", "_token_id")


def cache_root() -> Path:
    return Path(os.environ.get("TUNEFORGE_GGUF_CACHE", Path.home() / ".cache" / "tuneforge" / "gguf"))


def invalid_token_ids(path: Path) -> tuple[list[str], int]:
    """The special-token id keys that point past the vocabulary, and the vocabulary size."""
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise TuneforgeError(
            f"{path} is a GGUF file and reading it needs the gguf package: pip install 'tuneforge[gguf]'"
        ) from exc
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise TuneforgeError(f"{path} is not a readable GGUF file: {exc}") from exc
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else 0
    ids = {
        key: int(field.parts[field.data[0]][0])
        for key, field in reader.fields.items()
        if key.startswith(TOKEN_ID_KEY[0]) and key.endswith(TOKEN_ID_KEY[1]) and field.data
    }
    return [key for key, value in ids.items() if value >= vocab], vocab


def usable_gguf(folder: Path, name: str, notice: Callable[[str], None] = print) -> Path:
    """The folder to load `name` from: the user's, or a cached copy without ids past the vocabulary."""
    path = folder / name
    if not path.is_file():
        raise TuneforgeError(f"GGUF file not found: {path} (model.gguf_file)")
    bad, vocab = invalid_token_ids(path)
    if not bad:
        return folder
    stat = path.stat()
    copy_dir = cache_root() / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if not (copy_dir / name).is_file():
        copy_dir.mkdir(parents=True, exist_ok=True)
        partial = copy_dir / f".{name}.tmp"
        removals = [arg for key in bad for arg in ("--remove-metadata", key)]
        command = [
            sys.executable,
            "-m",
            "gguf.scripts.gguf_new_metadata",
            str(path),
            str(partial),
            *removals,
            "--force",
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise TuneforgeError(f"could not write a corrected copy of {path}: {done.stderr[-500:]}")
        partial.rename(copy_dir / name)
    notice(
        f"warning: {path} declares {', '.join(bad)} past its {vocab}-token vocabulary; loading a copy "
        f"without them ({copy_dir / name})"
    )
    return copy_dir
