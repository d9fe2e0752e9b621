"""What `tuneforge export` was asked for, as one value the exporter and every format read.

ExportOptions(format="gguf", quant="q8_0")   # the format names are tuneforge.export.formats.FORMATS
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneforge.export.merge import MergeBase

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
# A name in tuneforge.export.formats.FORMATS, spelled here: every format reads these options, so this module
# imports none of them.
DEFAULT_FORMAT = "hf"


@dataclass(frozen=True)
class ExportOptions:
    format: str = DEFAULT_FORMAT  # a name in FORMATS
    dtype: str = "auto"  # the merged weights: one of DTYPE_CHOICES; auto keeps the run's
    quant: str = "f16"  # GGUF type for the GGUF formats: see their `choices`
    merge_base: MergeBase = "unquantized"  # for a base trained in 4/8 bits; see tuneforge.export.merge
    data_file: Path | None = None  # prompts for the check instead of the run's eval split
    allow_mismatch: bool = False
    overwrite: bool = False
    license: str | None = None
    name: str | None = None  # the model's name in its own metadata (GGUF general.name); default: the folder's
    trust_remote_code: bool = False
    allow_base_change: bool = False  # load the run on a base that changed since it was trained
