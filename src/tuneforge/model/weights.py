"""Which weight files a local folder loads from, and the rule that no pickle file is opened unless
model.allow_pickle says so.

Pickle files (pytorch_model.bin, adapter_model.bin, *.pt) can run code when they are unpickled, and
transformers and peft fall back to them whenever the safetensors file they look for is absent, other
*.safetensors files beside it or not. So before anything is opened, a folder must hold the exact
safetensors file that would load, and loading then asks for safetensors only.

    kwargs = model_folder_weights(Path("models/tiny"), allow_pickle=False, label="models/tiny")
    AutoModelForCausalLM.from_pretrained("models/tiny", **kwargs)   # {"use_safetensors": True}
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import TuneforgeError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # what transformers looks for
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # what peft looks for, before adapter_model.bin


def pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())


def model_folder_weights(folder: Path, allow_pickle: bool, label: str) -> dict:
    """from_pretrained's arguments that load only what this check let through: the safetensors weights,
    or, with allow_pickle, whatever transformers finds. `label` names the folder and its setting."""
    if any((folder / name).is_file() for name in MODEL_WEIGHTS):
        return {"use_safetensors": True}
    pickles = pickle_files(folder)
    if not pickles:
        raise TuneforgeError(
            f"{label} has no weights (no model.safetensors or model.safetensors.index.json); "
            "is the download complete?"
        )
    if not allow_pickle:
        raise pickle_refusal(folder, pickles, label, "model.safetensors")
    return {}


def check_adapter_weights(folder: Path, allow_pickle: bool) -> None:
    """Before peft opens an adapter folder: its safetensors file, or pickle only with allow_pickle."""
    if (folder / ADAPTER_WEIGHTS).is_file() or allow_pickle:
        return
    pickles = pickle_files(folder)
    if pickles:
        raise pickle_refusal(folder, pickles, str(folder), ADAPTER_WEIGHTS)
    raise TuneforgeError(f"{folder} has no {ADAPTER_WEIGHTS}: is it complete?")


def pickle_refusal(folder: Path, pickles: list[str], label: str, expected: str) -> TuneforgeError:
    others = sorted(p.name for p in folder.glob("*.safetensors"))
    beside = f" ({', '.join(others)} beside them are not the weights that load)" if others else ""
    return TuneforgeError(
        f"{label} has no {expected}, so its weights would load from pickle ({', '.join(pickles)}){beside}; "
        "pickle can run code when loaded, so nothing was opened. Convert the weights to safetensors, or set "
        "model.allow_pickle: true if you trust the files."
    )
