"""The interface every export format implements; `tuneforge.export.exporter` calls it and names no format.

    class OnnxFormat(ExportFormat): ...   # then one line in tuneforge/export/formats/__init__.py

The exporter's order, and what each part must do:

1. `choices` (with every other format's) is checked against the options before anything loads; then
   `check_tools` finds or fetches what `write` will need, so a missing tool costs no merging.
2. `write` puts the merged model into the (empty, not yet created) staging folder; `weights` names what
   it wrote, which picks the export check's tolerance row through `precision`.
3. The check's independent reader (`reader.py`, a fresh process with plain transformers) loads the folder,
   or `model_file` in it; `reader` says how, in export_check.json.
4. `card_fields` are the format's entries in the model card's YAML metadata.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

    from tuneforge.export.options import ExportOptions
    from tuneforge.infer.load import LoadedRun

Notice = Callable[[str], None]


class ExportFormat(ABC):
    name: ClassVar[str]  # the --format value
    help: ClassVar[str]  # what it writes, in a few words, for `tuneforge export --help`
    library_name: ClassVar[str]  # the model card's library_name: what loads the files
    reader: ClassVar[str]  # how the check's fresh process loads them
    # ExportOptions fields this format reads -> their allowed values.
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    # The weights types it writes -> the check's tolerance row: 0 float32, 1 16-bit, 2 8-bit. A type left
    # out gets the loosest row (4- to 6-bit).
    precision: ClassVar[Mapping[str, int]] = {}

    def check_tools(self, options: ExportOptions, notice: Notice) -> None:  # noqa: B027 - most need none
        """Raise TuneforgeError if a tool `write` needs is missing; fetch one that can be fetched."""

    @abstractmethod
    def weights(self, options: ExportOptions, model: torch.nn.Module) -> str:
        """The weights type `write` writes for the merged `model` (a key of `precision`, or not)."""

    @abstractmethod
    def write(
        self, model: torch.nn.Module, loaded: LoadedRun, staging: Path, options: ExportOptions, notice: Notice
    ) -> None:
        """Write the merged `model` (and `loaded.tokenizer`) into `staging`, which does not exist yet."""

    def model_file(self, options: ExportOptions) -> str | None:
        """The file in the folder that transformers loads (its `gguf_file=`); None: the folder itself."""
        return None

    def card_fields(self) -> dict:
        """The model card's metadata from the format: library_name, and tags added to tuneforge's own."""
        return {"library_name": self.library_name, "tags": [self.name]}
