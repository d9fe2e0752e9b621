"""`PreparedData`: what the data stage hands a training method, whichever track (kind of sample) made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from tuneforge.data.preflight import CheckResult


@dataclass
class PreparedData:
    train: Dataset
    eval: Dataset | None
    train_stats: Any  # the track's statistics (TokenizeStats for samples, PairStats for pairs)
    eval_stats: Any | None
    format: str  # the row shape the track read (messages, alpaca, ... for samples; pairs or kto)
    template_source: str
    file_hashes: dict[Path, str]  # sha256 of every local file read, for the cache key and the manifest
    preflight: list[CheckResult] = field(default_factory=list)
    cache_hit: bool = False
    # The held-out rows as conversations (or documents): saved with the run, so evaluation scores exactly them.
    eval_items: list = field(default_factory=list)

    @property
    def max_length(self) -> int:
        return self.train_stats.max_length
