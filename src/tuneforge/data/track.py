"""The `Track` interface: one kind of training sample (SFT samples, preference pairs, ...) over the shared
data core.

The core (`data/prepare.py`) reads the sources (one file, a hub dataset or `data.mix`), installs the prompt
template, looks up the tokenization cache and stores what it encoded; a track says how its rows are read,
encoded through the one encoder (`data/encode.py`) and checked. Tracks: `data/samples.py` (one
conversation or document per row) and `data/pairs/track.py` (preference pairs and KTO rows). A new kind of
sample is one new module implementing this interface.
"""

from __future__ import annotations

from typing import Any, Protocol

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.preflight import CheckResult
from tuneforge.data.sources import RawData


class Track(Protocol):
    name: str
    """Part of the tokenization cache key: tracks never share cache entries."""
    stats_type: type
    """The dataclass of the track's statistics; the cache stores it as JSON and rebuilds it from that."""

    def shape(self, columns: list[str], data: DataConfig, source: str) -> str:
        """The row shape of a source with these columns, checked: raises naming the source and the
        column mapping to fix when a needed column is missing."""
        ...

    def mix_rows(self, rows: Dataset, shape: str, data: DataConfig, source: str) -> tuple[str, list[dict]]:
        """A `data.mix` source's rows in the track's common form, and that form's shape: each source keeps
        its own columns and shape, the mixed rows share one."""
        ...

    def encode(
        self,
        raw: RawData,
        shape: str,
        data: DataConfig,
        encoder: ChatEncoder,
        max_length: int | None,
        context_length: int | None,
    ) -> tuple[Dataset, Dataset | None, Any, Any | None]:
        """(train, eval, train_stats, eval_stats): every row encoded through the one encoder, cut at
        max_length (None: auto, from the training rows), held-out rows cut where training rows are."""
        ...

    def preflight(
        self,
        data: DataConfig,
        tokenizer: PreTrainedTokenizerBase,
        encoded: tuple[Dataset, Dataset | None, Any, Any | None],
        shape: str,
    ) -> list[CheckResult]:
        """The track's checks on the encoded sets; raises when no row is left to train on."""
        ...

    def eval_items(self, raw: RawData, shape: str, data: DataConfig) -> list:
        """The held-out rows as conversations (or documents), saved with the run for evaluation."""
        ...
