"""Bad inputs for the table in test_bad_inputs.py: run directories in a state a command cannot use, whose
refusal must give advice that fits the state (issue 21). Same shape as bad_input_cases.CASES."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bad_input_cases import World, locked_copy


def damaged_manifest_copy(w: World) -> Path:
    copy = w.tmp / "run-bad-manifest"
    shutil.copytree(w.finished, copy)
    (copy / "manifest.json").write_text((copy / "manifest.json").read_text()[:30])
    return copy


def running_copy(w: World) -> Path:
    """A run another live process is training: its manifest says running and it holds the lock."""
    copy = locked_copy(w)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    return copy


CASES: dict = {
    "export a run that is still training": (
        lambda w: ["export", str(running_copy(w)), "--out", str(w.tmp / "export")],
        ["is still training (another process)", "Wait for it"],
    ),
    "eval a run that is still training": (
        lambda w: ["eval", str(running_copy(w))],
        ["is still training (another process)", "Wait for it"],
    ),
    "generate with a damaged manifest": (
        lambda w: ["generate", str(damaged_manifest_copy(w)), "--prompt", "hi"],
        ["manifest.json is damaged (not valid JSON", "its adapter folder is there", "Restore manifest.json"],
    ),
    "train into a run whose manifest is damaged": (
        lambda w: w.train(w.config())[:2] + ["--output-dir", str(damaged_manifest_copy(w))],
        ["manifest.json is damaged", "nothing was changed", "--overwrite"],
    ),
}
