"""The workspace: the one folder the studio reads and writes. Paths a user types or picks are resolved
inside it (symlinks followed) and refused outside it; uploads land in WORKSPACE/studio/uploads, the configs
the studio writes in WORKSPACE/studio, training consoles in WORKSPACE/studio/logs.

    ws = Workspace(Path.cwd(), Path("runs"))
    ws.inside("data/demo/train.jsonl", "data file")   # -> absolute Path, or TuneforgeError
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tuneforge.errors import TuneforgeError

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
SKIPPED = {".venv", "venv", ".git", "node_modules", "__pycache__", "checkpoints", "tensorboard", "studio"}
MAX_LISTED = 200  # entries a picker lists; a path can always be typed


@dataclass(frozen=True)
class Workspace:
    root: Path
    runs: Path

    @classmethod
    def open(cls, root: Path, runs: Path) -> Workspace:
        root = root.expanduser().resolve()
        if not root.is_dir():
            raise TuneforgeError(f"workspace {root} is not a folder")
        workspace = cls(root, root)
        return cls(root, workspace.inside(str(runs), "--runs"))

    @property
    def studio(self) -> Path:
        return self.root / "studio"

    @property
    def uploads(self) -> Path:
        return self.studio / "uploads"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def inside(self, text: str, what: str) -> Path:
        """`text` (relative to the workspace, or absolute) as an absolute path inside the workspace."""
        if not str(text).strip():
            raise TuneforgeError(f"{what}: give a path inside the workspace {self.root}")
        path = Path(str(text).strip()).expanduser()
        resolved = (path if path.is_absolute() else self.root / path).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise TuneforgeError(
                f"{what} {text!r} is outside the workspace {self.root}; the studio reads and writes only inside "
                "it (start it with --workspace DIR to choose another folder)"
            )
        return resolved

    def relative(self, path: Path) -> str:
        """How configs and tables name a workspace path: relative, as a user types it."""
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def save_upload(self, uploaded: Path) -> Path:
        """Copy a browser upload into studio/uploads (never overwriting a different file); returns it."""
        if uploaded.suffix.lower() not in DATA_SUFFIXES:
            raise TuneforgeError(f"{uploaded.name}: upload a data file ({', '.join(DATA_SUFFIXES)})")
        self.uploads.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", uploaded.stem) or "data"
        target, n = self.uploads / f"{stem}{uploaded.suffix.lower()}", 1
        while target.exists() and target.read_bytes() != uploaded.read_bytes():
            n += 1
            target = self.uploads / f"{stem}-{n}{uploaded.suffix.lower()}"
        shutil.copyfile(uploaded, target)
        return target

    def files(self, keep) -> list[str]:
        """Workspace paths (relative) that `keep(path)` accepts, skipping environments, caches and runs."""
        found: list[str] = []

        def walk(folder: Path, depth: int) -> None:
            for entry in sorted(folder.iterdir()):
                if len(found) >= MAX_LISTED or entry.name.startswith(".") and entry.name != ".":
                    continue
                if keep(entry):
                    found.append(self.relative(entry))
                elif entry.is_dir() and entry.name not in SKIPPED and entry != self.runs and depth < 4:
                    walk(entry, depth + 1)

        walk(self.root, 0)
        uploads = sorted(self.uploads.glob("*")) if self.uploads.is_dir() else []
        return found + [self.relative(p) for p in uploads if keep(p)]

    def data_files(self) -> list[str]:
        return self.files(lambda p: p.is_file() and p.suffix.lower() in DATA_SUFFIXES)

    def models(self) -> list[str]:
        return self.files(lambda p: (p / "config.json").is_file() or p.suffix.lower() == ".gguf")

    def templates(self) -> list[str]:
        return self.files(lambda p: p.is_file() and p.suffix in (".jinja", ".j2"))

    def run_dirs(self) -> list[str]:
        """Every run directory under the runs folder (those the terminal started too), newest first."""
        if not self.runs.is_dir():
            return []
        found = sorted(self.runs.rglob("manifest.json"), key=lambda m: m.stat().st_mtime, reverse=True)
        return [self.relative(m.parent) for m in found if "checkpoints" not in m.parts]

    def export_dirs(self) -> list[str]:
        if not self.exports.is_dir():
            return []
        return [self.relative(c.parent) for c in sorted(self.exports.glob("*/export_check.json"))]

    def log_for(self, run_dir: Path) -> Path:
        """The console of a run the studio started: one file per run directory, appended on resume."""
        name = quote(self.relative(run_dir), safe="")  # runs/a_b and runs/a/b stay two files
        return self.studio / "logs" / f"{name}.log"
