"""Bad inputs for the table in test_bad_inputs.py: safety (issue 21). Same shape as bad_input_cases.CASES:
name -> (builder(World) -> CLI arguments, texts the message must hold).

The builders here are also the fixtures of tests/test_base_pin.py: a run whose base is its own copy,
named by a relative path, and files whose unpickling would leave a marker file behind."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
from pathlib import Path

import torch
from bad_input_cases import World
from safetensors import safe_open
from safetensors.torch import load_file, save_file

RELATIVE_BASE = "models/tiny-llama"


class TouchesMarker:
    """Unpickled, it creates `marker`: proof that a pickle file was opened."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def marker_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(TouchesMarker(marker)))
    return path


def relocated_run(w: World, root: Path) -> tuple[Path, Path]:
    """A copy of the finished run at root/runs/run whose base is its own copy at root/models/tiny-llama,
    recorded as `train` run in `root` with model.name_or_path: models/tiny-llama would record it."""
    model = root / RELATIVE_BASE
    shutil.copytree(w.model, model)
    run = root / "runs" / "run"
    shutil.copytree(w.finished, run)
    config = run / "config.yaml"
    config.write_text(
        config.read_text().replace(f"name_or_path: {w.model}", f"name_or_path: {RELATIVE_BASE}")
    )
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["base_model"].update(
        name_or_path=RELATIVE_BASE, path=str(model), relative_to_run=f"../../{RELATIVE_BASE}"
    )
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run, model


def swap_weights(model: Path) -> None:
    """Other weights of the same names, shapes and dtypes: the file's size and header stay as they were."""
    path = model / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    save_file({name: torch.flip(t, [0]) + 0.5 for name, t in tensors.items()}, path, metadata=metadata)


def swapped_base_run(w: World) -> Path:
    run, model = relocated_run(w, w.tmp)
    swap_weights(model)
    return run


def moved_run_alone(w: World) -> list[str]:
    """A run moved away from the models folder it named relatively, with the shell elsewhere too."""
    run, model = relocated_run(w, w.tmp / "before")
    shutil.rmtree(model.parent)
    return ["generate", str(run), "--prompt", "hi"]


def pickle_beside_other_safetensors(w: World) -> Path:
    folder = w.tmp / "mixed-model"
    shutil.copytree(w.model, folder)
    (folder / "model.safetensors").rename(folder / "other.safetensors")
    marker_pickle(folder / "pytorch_model.bin", w.tmp / "unpickled")
    return folder


def pickled_adapter_run(w: World) -> Path:
    run = w.tmp / "run-pickled-adapter"
    shutil.copytree(w.finished, run)
    (run / "adapter" / "adapter_model.safetensors").unlink()
    marker_pickle(run / "adapter" / "adapter_model.bin", w.tmp / "unpickled")
    return run


def pickled_full_run(w: World) -> Path:
    """A full fine-tune's run directory: the whole model in adapter/, here as a pickle."""
    run = w.tmp / "run-pickled-full"
    shutil.copytree(w.finished, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("method: lora", "method: full"))
    shutil.rmtree(run / "adapter")
    shutil.copytree(w.model, run / "adapter")
    (run / "adapter" / "model.safetensors").unlink()
    marker_pickle(run / "adapter" / "pytorch_model.bin", w.tmp / "unpickled")
    return run


def pickled_export(w: World) -> Path:
    """An `hf` export folder whose weights are a pickle: the model's files, the run's config beside them."""
    folder = w.tmp / "export-pickled"
    shutil.copytree(w.model, folder)
    (folder / "model.safetensors").unlink()
    marker_pickle(folder / "pytorch_model.bin", w.tmp / "unpickled")
    shutil.copyfile(w.finished / "config.yaml", folder / "tuneforge_run.yaml")
    (folder / "tuneforge_export.json").write_text(json.dumps({"tool": "tuneforge", "format": "hf"}))
    return folder


CHANGED = ["model.safetensors changed since", "(content differs; same size)", "--allow-base-change"]

CASES: dict = {
    "generate on a base whose weights were swapped": (
        lambda w: ["generate", str(swapped_base_run(w)), "--prompt", "hi"],
        CHANGED,
    ),
    "--resume on a base whose weights were swapped": (
        lambda w: [
            "train",
            str((run := swapped_base_run(w)) / "config.yaml"),
            "--output-dir",
            str(run),
            "--resume",
            "--set",
            "train.max_steps=3",
        ],
        CHANGED,
    ),
    "pickle weights beside unrelated safetensors": (
        lambda w: w.train(w.config(model=pickle_beside_other_safetensors(w))),
        ["pytorch_model.bin", "other.safetensors", "model.allow_pickle"],
    ),
    "an adapter that is a pickle": (
        lambda w: ["generate", str(pickled_adapter_run(w)), "--prompt", "hi"],
        ["adapter_model.bin", "model.allow_pickle"],
    ),
    "model.adapter that is a pickle": (
        lambda w: w.train(w.config(), "--set", f"model.adapter={pickled_adapter_run(w)}"),
        ["adapter_model.bin", "model.allow_pickle"],
    ),
    "a full fine-tune whose weights are a pickle": (
        lambda w: ["generate", str(pickled_full_run(w)), "--prompt", "hi"],
        ["run-pickled-full/adapter", "pytorch_model.bin", "model.allow_pickle"],
    ),
    "an hf export whose weights are a pickle": (
        lambda w: ["generate", str(pickled_export(w)), "--prompt", "hi"],
        ["export-pickled", "pytorch_model.bin", "model.allow_pickle"],
    ),
    "a moved run whose relative base is nowhere": (
        moved_run_alone,
        [
            "base model of",
            "is not found",
            "'models/tiny-llama' was a local folder",
            "before/models/tiny-llama",
        ],
    ),
}
