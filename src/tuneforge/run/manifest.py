"""manifest.json: what a run was made from (versions, data checksums, seed, hardware, git commit) and when."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from tuneforge.run.cpu import cpu_share

PACKAGES = (
    "tuneforge",
    "torch",
    "transformers",
    "peft",
    "datasets",
    "accelerate",
    "bitsandbytes",
    "tokenizers",
    "trl",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def hardware() -> dict:
    info = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_budget": cpu_share().budget.as_dict(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def read_manifest(path: Path) -> dict:
    """The JSON object in `path`; {} when it is missing or unreadable (a process killed mid-write)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def manifest_problem(path: Path) -> str | None:
    """What is wrong with the manifest at `path`, if it is there but cannot be read as one."""
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_bytes() or b"null")
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at line {exc.lineno}"
    except (OSError, ValueError) as exc:
        return f"unreadable: {exc}"
    return None if isinstance(found, dict) else "not a JSON object"


def write_manifest(path: Path, fields: dict, drop: tuple[str, ...] = ()) -> None:
    """Merge `fields` into the manifest (removing `drop`), atomically: a crash leaves the old manifest or
    the new one."""
    existing = {k: v for k, v in read_manifest(path).items() if k not in drop}
    existing.update(fields)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(existing, indent=2, default=str) + "\n")
    os.replace(temporary, path)


SECRET_NAME = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD)", re.IGNORECASE)


def secret_values() -> list[str]:
    """Values of environment variables that hold credentials (HF_TOKEN, WANDB_API_KEY, *_KEY, *_TOKEN)."""
    return [v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 6]


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "<redacted>")
    return text


# Set by `tuneforge train --nproc N` for the processes it starts: the command the user typed, not theirs.
LAUNCH_COMMAND = "TUNEFORGE_LAUNCH_COMMAND"


def command_line() -> list[str]:
    typed = os.environ.get(LAUNCH_COMMAND)
    return [redact(arg) for arg in (json.loads(typed) if typed else sys.argv)]


def start_fields(file_hashes: dict[Path, str], rows: dict[str, int], seed: int) -> dict:
    return {
        "tool": "tuneforge",
        "status": "running",
        "started": now(),
        "versions": package_versions(),
        "data_files": [
            {"path": str(p), "sha256": h, "bytes": p.stat().st_size} for p, h in file_hashes.items()
        ],
        "rows": rows,
        "seed": seed,
        "git_commit": git_commit(Path.cwd()),
        "hardware": hardware(),
        "command": command_line(),
    }


# What an earlier end of the run wrote; a resume starts a new end.
ENDED = ("error", "stopped", "finished")


def resume_record(checkpoint: Path, resumes: list[dict]) -> dict:
    """The fields a resume changes; the original start fields stay as they were (drop ENDED)."""
    entry = {"at": now(), "from_checkpoint": checkpoint.name, "command": command_line()}
    return {"status": "running", "resumes": [*resumes, entry]}
