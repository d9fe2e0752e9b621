"""Start from a finished LoRA run (model.adapter): find its adapter, check it fits this base, load it trainable.

The run's adapter folder carries the tokenizer and the exact chat template it was trained with, so a
run that continues it (preference tuning after SFT, most often) prompts the model as that run did.

    folder = adapter_folder("runs/my_sft", "models/base")
    model = continue_adapter(base_model, folder)
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel
from transformers import PreTrainedModel

from tuneforge.config.schema import ModelConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.weights import check_adapter_weights

ADAPTER_CONFIG = "adapter_config.json"


def adapter_folder(adapter: str, base: str) -> Path:
    """The adapter folder of a run folder (or the adapter folder itself), checked against the base model."""
    given = Path(adapter).expanduser()
    folder = next((f for f in (given / "adapter", given) if (f / ADAPTER_CONFIG).is_file()), None)
    if folder is None:
        hint = (
            " It holds no adapter/: did that run finish? (`tuneforge runs`)"
            if (given / "manifest.json").is_file()
            else ""
        )
        raise TuneforgeError(
            f"model.adapter: {adapter} is neither a finished LoRA run folder nor an adapter folder "
            f"(no {ADAPTER_CONFIG}).{hint}"
        )
    trained_on = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if trained_on and not same_model(trained_on, base):
        raise TuneforgeError(
            f"model.adapter: {folder} was trained on {trained_on}, but model.name_or_path is {base}; an "
            "adapter only fits the base it was trained on"
        )
    return folder


def starting_adapter(model: ModelConfig) -> Path | None:
    """The adapter folder model.adapter names, checked; None for a run that starts from the base."""
    if not model.adapter:
        return None
    folder = adapter_folder(model.adapter, model.name_or_path)
    check_adapter_weights(folder, model.allow_pickle)
    return folder


def same_model(a: str, b: str) -> bool:
    """Hub ids compare as text; local folders by where they resolve to."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a.rstrip("/") == b.rstrip("/")


def continue_adapter(base: PreTrainedModel, folder: Path) -> PeftModel:
    return PeftModel.from_pretrained(base, str(folder), is_trainable=True)


def check_same_template(adapter_template: str | None, installed: str | None, adapter: str) -> None:
    """A run that continues an adapter prompts as that adapter was trained, or says why it cannot."""
    if adapter_template and installed != adapter_template:
        raise TuneforgeError(
            f"data.template renders prompts differently from the chat template {adapter} was trained with; "
            "the adapter would be trained further on prompts it never saw. Leave data.template at auto "
            "(the adapter's template is used)."
        )
