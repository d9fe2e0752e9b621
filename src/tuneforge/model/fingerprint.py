"""A cheap fingerprint of a base model, recorded when a run starts, so that later commands can tell whether
the base under a run's adapter is still the one it was trained on.

Hashing a whole 15 GB model would take minutes. Each weight file instead contributes its size, its
safetensors header (every tensor's name, dtype, shape and offsets) and the hash of a fixed sample of its
bytes: 16 chunks of 64 KiB at evenly spaced offsets plus the last chunk. Weights swapped for another set
of the same shape differ in every sampled chunk; a file costs its header plus at most ~1.1 MB of reads.
A hub id costs nothing to fingerprint but the commit the local Hugging Face cache resolves it to.

    record = fingerprint(config.model)
    for name, why in differences(record, fingerprint(config.model)):
        print(f"{name}: {why}")        # model.safetensors: content differs; same size
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tuneforge.config.schema import ModelConfig
from tuneforge.model.weights import PICKLE_SUFFIXES

CHUNK = 64 * 1024
CHUNKS = 16
SAMPLE_BUDGET = (CHUNKS + 1) * CHUNK  # the most bytes of a file's content one fingerprint reads
HEADER_LIMIT = 100 * 1024 * 1024  # safetensors refuses larger headers itself


def fingerprint(model: ModelConfig) -> dict:
    folder = Path(model.name_or_path).expanduser()
    if folder.is_dir():
        return folder_fingerprint(folder, model.gguf_file)
    return hub_fingerprint(model.name_or_path, model.revision)


def folder_fingerprint(folder: Path, gguf_file: str | None = None) -> dict:
    config = folder / "config.json"
    return {
        "kind": "local",
        "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
        "files": {path.name: file_fingerprint(path) for path in weight_files(folder, gguf_file)},
    }


def weight_files(folder: Path, gguf_file: str | None) -> list[Path]:
    """The files the weights load from: the GGUF file, else the safetensors files, else pickle ones."""
    if gguf_file is not None:
        return [folder / gguf_file] if (folder / gguf_file).is_file() else []
    safetensors = sorted(folder.glob("*.safetensors"))
    return safetensors or sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())


def file_fingerprint(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as f:
        found = {"bytes": size, "sample_sha256": sample_hash(f, size)}
        if path.suffix == ".safetensors":
            found["header_sha256"] = header_hash(f, size)
    return found


def sample_offsets(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the chunks read from a file of `size` bytes: all of a small file."""
    if size <= SAMPLE_BUDGET:
        return [(0, size)]
    last = size - CHUNK
    return [(i * last // CHUNKS, CHUNK) for i in range(CHUNKS)] + [(last, CHUNK)]


def sample_hash(f, size: int) -> str:
    digest = hashlib.sha256()
    for offset, length in sample_offsets(size):
        f.seek(offset)
        digest.update(f.read(length))
    return digest.hexdigest()


def header_hash(f, size: int) -> str:
    """The safetensors header: an 8-byte little-endian length, then that many bytes of JSON."""
    f.seek(0)
    length = int.from_bytes(f.read(8), "little")
    # A damaged length reads what there is: the load that follows names the damage.
    return hashlib.sha256(f.read(min(length, HEADER_LIMIT, max(size - 8, 0)))).hexdigest()


def hub_fingerprint(name: str, revision: str | None) -> dict:
    """What is known without the network: the commit the local cache resolves the revision to, if any."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision)
    except (ValueError, OSError):  # not a valid repo id: nothing cached under it
        cached = None
    commit = Path(cached).parent.name if isinstance(cached, str) else None
    return {"kind": "hub", "name": name, "revision": revision, "commit": commit}


def differences(recorded: dict, current: dict) -> list[tuple[str, str]]:
    """(file name, what changed) for each difference; the name is "" for the model as a whole."""
    if recorded.get("kind") != current.get("kind"):
        was = "a local folder" if recorded.get("kind") == "local" else "a hub id"
        return [("", f"it was {was} when the run was trained")]
    if current["kind"] == "hub":
        before, now = recorded.get("commit"), current.get("commit")
        if before and now and before != now:
            why = f"the local cache resolves it to commit {now[:12]}, the run was trained on {before[:12]}"
            return [("", why)]
        return []
    found = []
    if recorded.get("config_sha256") != current.get("config_sha256"):
        found.append(("config.json", "content differs"))
    before, now = recorded.get("files", {}), current.get("files", {})
    for name in sorted(before.keys() | now.keys()):
        if name not in now:
            found.append((name, "it is gone"))
        elif name not in before:
            found.append((name, "it is new"))
        elif before[name] != now[name]:
            found.append((name, file_change(before[name], now[name])))
    return found


def file_change(before: dict, now: dict) -> str:
    if before.get("bytes") != now.get("bytes"):
        return f"{before.get('bytes')} bytes then, {now.get('bytes')} now"
    if before.get("header_sha256") != now.get("header_sha256"):
        return "tensor names, shapes or dtypes differ; same size"
    return "content differs; same size"
