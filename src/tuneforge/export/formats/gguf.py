"""`--format gguf`: one GGUF file, converted by llama.cpp's own converter from the merged hf folder.

    tuneforge export runs/quickstart --out exports/q-gguf --format gguf --quant q8_0

The converter (and, for the k-quants, llama-quantize) is found or fetched before any merging; see
tuneforge.export.gguf_convert.
"""

from __future__ import annotations

import shutil

from tuneforge.export.formats.base import ExportFormat
from tuneforge.export.formats.hf import save_folder
from tuneforge.export.gguf_convert import (
    CONVERTER_TYPES,
    QUANTIZE_TYPES,
    convert,
    converter_root,
    find_quantize,
)


class GgufFormat(ExportFormat):
    name = "gguf"
    help = "one GGUF file of --quant type"
    library_name = "gguf"
    reader = "transformers GGUF loader"
    choices = {"quant": (*CONVERTER_TYPES, *QUANTIZE_TYPES)}
    precision = {"f32": 0, "f16": 1, "bf16": 1, "q8_0": 2}

    def check_tools(self, options, notice) -> None:
        if options.quant in QUANTIZE_TYPES:
            find_quantize()
        converter_root(notice)  # fetched now, once, rather than after minutes of merging

    def weights(self, options, model) -> str:
        return options.quant

    def model_file(self, options) -> str | None:
        return f"model-{options.quant}.gguf"

    def write(self, model, loaded, staging, options, notice) -> None:
        hf_dir = staging / ".hf"  # the converter's input, inside staging so a failure cleans it up too
        save_folder(model, loaded.tokenizer, hf_dir)
        convert(hf_dir, staging / self.model_file(options), options.quant, notice, name=options.name)
        shutil.rmtree(hf_dir)
