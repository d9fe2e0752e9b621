"""`tuneforge data CONFIG`: see what training will see, without loading model weights.

The run's recipe (`train/methods.py`) prepares the data exactly as training would (tokenizer only) and
reports it: rendered samples with the trained tokens highlighted, token lengths, the max_length chosen,
truncation and the preflight results. Shared by every method: max_length resolved against the model's
context, and how many layers each LoRA target name matches (the model stage's architecture on the meta
device).

    tuneforge data examples/quickstart.yaml --n 3
"""

from __future__ import annotations

from rich.console import Console

from tuneforge.config.schema import RunConfig
from tuneforge.data.prepared import PreparedData
from tuneforge.model.load import architecture, context_length, load_tokenizer
from tuneforge.model.start import starting_adapter
from tuneforge.train.builders import requested_length
from tuneforge.train.methods import check_method, recipe_for


def preview_data(config: RunConfig, hf_config=None) -> tuple[PreparedData, object]:
    """The data exactly as training would prepare it, with max_length resolved against the model's context."""
    check_method(config)
    hf_config = hf_config or architecture(config.model).config
    model = config.model
    tokenizer = load_tokenizer(model, starting_adapter(model))
    limit = context_length(hf_config)
    recipe = recipe_for(config.train.method)
    return recipe.prepare_data(config, tokenizer, requested_length(config), limit), tokenizer


def resolved_max_length(config: RunConfig) -> int:
    """train.max_length as a number; auto is resolved from the data (tokenizer only, no weights)."""
    requested = requested_length(config)
    return requested if requested is not None else preview_data(config)[0].max_length


def data_report(config: RunConfig) -> tuple[PreparedData, dict, object]:
    """`tuneforge data --json`: the data as prepared, its report, and the tokenizer."""
    hf_config = architecture(config.model).config
    data, tokenizer = preview_data(config, hf_config)
    return data, recipe_for(config.train.method).data_report(config, data, hf_config), tokenizer


def show_report(console: Console, config: RunConfig, n: int) -> dict:
    """`tuneforge data`: the recipe's view of the data, then the LoRA targets every method shares."""
    data, report, tokenizer = data_report(config)
    recipe_for(config.train.method).show_data(console, data, tokenizer, report, n)
    matches = report["lora_targets"]
    if matches:
        console.print("LoRA targets: " + ", ".join(f"{k} ({v})" for k, v in matches.items()))
    return report
