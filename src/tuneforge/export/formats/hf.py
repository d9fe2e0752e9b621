"""`--format hf`: the merged model as a plain transformers folder (safetensors, tokenizer, generation config).

tuneforge export runs/quickstart --out exports/quickstart --dtype bfloat16
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.export.formats.base import ExportFormat


class HfFormat(ExportFormat):
    name = "hf"
    help = "merged safetensors"
    library_name = "transformers"
    reader = "transformers"
    precision = {"float32": 0, "bfloat16": 1, "float16": 1}

    def weights(self, options, model) -> str:
        return str(model.dtype).removeprefix("torch.")

    def write(self, model, loaded, staging, options, notice) -> None:
        save_folder(model, loaded.tokenizer, staging)


def save_folder(model, tokenizer, folder: Path) -> None:
    """The merged model and the run's tokenizer as a transformers folder; the GGUF converter reads it too."""
    folder.mkdir(parents=True)
    generation = model.generation_config
    eos = generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    # The run's EOS first: where training taught the model to stop. The base's own stay as extra stops.
    generation.eos_token_id = [
        tokenizer.eos_token_id,
        *(i for i in eos if i not in (None, tokenizer.eos_token_id)),
    ]
    generation.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
