"""The installable package: `python -m build` makes a wheel and an sdist; the wheel goes into a fresh
virtual environment (with the pinned CPU torch), and there `tuneforge --version` and a 5-step training from a
YAML outside the source tree work, so nothing depends on the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.version import __version__

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the CPU build, as the Makefile installs it


def run(command: list, cwd: Path | None = None, timeout: int = 900) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    said = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{said[-3000:]}"
    return said


@pytest.mark.slow
def test_the_wheel_installs_and_trains_outside_the_source_tree(tmp_path, tiny_models, demo_files):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", dist, ROOT])
    (wheel,) = dist.glob("tuneforge-*.whl")
    assert len(list(dist.glob("tuneforge-*.tar.gz"))) == 1
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "pip", "install", "-q", TORCH, wheel])
    assert f"tuneforge {__version__}" in run([venv / "bin" / "tuneforge", "--version"], cwd=tmp_path)
    train, eval_ = demo_files
    config = tmp_path / "outside" / "five.yaml"
    config.parent.mkdir()
    config.write_text(
        f"model: {{name_or_path: {tiny_models('llama')}}}\n"
        f"data: {{path: {train}, eval_path: {eval_}}}\n"
        "lora: {r: 4, alpha: 8}\n"
        "train: {max_steps: 5, batch_size: 4, max_length: 64, eval_steps: 5, save_steps: 5, logging_steps: 1}\n"
    )
    said = run([venv / "bin" / "tuneforge", "train", config], cwd=config.parent)
    assert "done: runs/five" in said and (config.parent / "runs" / "five" / "adapter").is_dir()
    imported = run(
        [venv / "bin" / "python", "-c", "import tuneforge, sys; print(tuneforge.__file__)"], cwd=tmp_path
    )
    assert str(ROOT) not in imported and "site-packages" in imported
