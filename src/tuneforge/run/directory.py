"""The run directory: where a run's artifacts live, and the rules that keep finished work safe.

RUN_DIR/config.yaml  manifest.json  metrics.jsonl  plots/loss.png  adapter/  checkpoints/  tensorboard/
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.run.manifest import read_manifest


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.root / "plots" / "loss.png"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def is_finished(self) -> bool:
        return read_manifest(self.manifest).get("status") == "finished"

    def latest_checkpoint(self) -> Path | None:
        """Newest checkpoint whose trainer_state.json (written last by the Trainer) is present and readable."""
        candidates = sorted(self.checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        for path in reversed(candidates):
            try:
                json.loads((path / "trainer_state.json").read_text())
            except (OSError, ValueError):
                continue  # killed while writing: skip it, the previous one is intact
            return path
        return None

    def prepare(self, *, resume: bool, overwrite: bool) -> Path | None:
        """Create or reuse the directory; return the checkpoint to resume from, if any."""
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        if resume:
            checkpoint = self.latest_checkpoint()
            if checkpoint is None:
                raise TuneforgeError(f"--resume: no complete checkpoint under {self.checkpoints}")
            return checkpoint
        if self.is_finished():
            raise TuneforgeError(
                f"{self.root} holds a finished run; pass --overwrite to replace it or --output-dir for a new one"
            )
        if self.latest_checkpoint() is not None:
            raise TuneforgeError(
                f"{self.root} has checkpoints from an unfinished run; pass --resume to continue it "
                "or --overwrite to start over"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        return None
