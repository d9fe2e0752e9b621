"""The export formats: one module each, implementing `base.ExportFormat`, and this registry of them.

    from tuneforge.export.formats import FORMATS
    FORMATS["gguf"].model_file(options)   # what the check's reader loads

A new format is one module beside these and one line below; `tuneforge export --format` then lists and
accepts it. The modules import nothing heavy at import time: the CLI reads this registry for its help.
"""

from __future__ import annotations

from tuneforge.export.formats.base import ExportFormat
from tuneforge.export.formats.gguf import GgufFormat
from tuneforge.export.formats.hf import HfFormat
from tuneforge.export.formats.ollama import OllamaFormat

FORMATS: dict[str, ExportFormat] = {
    "hf": HfFormat(),
    "gguf": GgufFormat(),
    "ollama": OllamaFormat(),
}

__all__ = ["FORMATS", "ExportFormat"]
