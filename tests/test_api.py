"""The Python API (`import tuneforge`): the same stages as the CLI, as objects. A kernel interrupt during
`train` stops as Ctrl-C does (one sealed checkpoint); errors are the CLI's TuneforgeErrors, never
SystemExit; generate equals `tuneforge generate`; the quickstart notebook runs end to end (nbclient)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import quick_config

import tuneforge
from tuneforge.errors import TuneforgeError
from tuneforge.run.checkpoints import checkpoint_dirs, problem

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "list the files in /srv/data"


def config_dict(model: Path, train: Path, eval_: Path, **train_settings) -> dict:
    raw = quick_config(model, train, eval_).model_dump(mode="json")
    raw["train"].update(train_settings)
    return raw


def test_train_load_metrics_plot_generate_preview(tiny_models, demo_files, tmp_path):
    model, (train, eval_) = tiny_models("llama"), demo_files
    run = tuneforge.train(config_dict(model, train, eval_), output_dir=tmp_path / "run")
    assert run.status == "finished" and tuneforge.load(tmp_path / "run").status == "finished"
    assert {"step", "loss", "eval_loss"} <= set(run.metrics.columns) and run.metrics["loss"].notna().any()
    assert run.plot()._repr_png_().startswith(b"\x89PNG")
    out = tmp_path / "cli.jsonl"
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "generate",
        str(run.path),
        "--prompt",
        PROMPT,
        "--output",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True)
    assert run.generate(PROMPT) == json.loads(out.read_text())["generation"]
    assert run.generate([PROMPT, PROMPT]) == [run.generate(PROMPT)] * 2
    preview = tuneforge.preview(config_dict(model, train, eval_))
    assert preview.failed == [] and {c.check for c in preview.preflight} >= {"eos", "prompt_match"}


def test_errors_are_the_clis_messages_not_system_exit(tiny_models, demo_files, tmp_path):
    model, (train, eval_) = tiny_models("llama"), demo_files
    raw = config_dict(model, train, eval_)
    with pytest.raises(TuneforgeError, match="max_stepz.*did you mean"):
        tuneforge.train(raw, output_dir=tmp_path / "x", train={"max_stepz": 3})
    with pytest.raises(TuneforgeError, match="output_dir"):
        tuneforge.train(raw)
    (tmp_path / "no_eos.jinja").write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    preview = tuneforge.preview(raw, data={"template": str(tmp_path / "no_eos.jinja")})
    assert [c.check for c in preview.failed][:1] == ["eos"]
    with pytest.raises(TuneforgeError, match="neither a tuneforge run"):
        tuneforge.load(tmp_path)


KERNEL_TRAIN = """
import tuneforge
run = tuneforge.train({config!r}, output_dir={out!r})
print("STATUS", run.status)
"""


def test_a_kernel_interrupt_during_train_leaves_one_sealed_checkpoint(tiny_models, demo_files, tmp_path):
    """A real Jupyter kernel (jupyter_client + ipykernel) runs train; the test interrupts the kernel as the
    notebook's stop button does, once training has logged a step."""
    manager = pytest.importorskip("jupyter_client.manager")
    model, (train, eval_) = tiny_models("llama"), demo_files
    # slow steps (64 forward passes each) and no regular checkpoint: the one found is the interrupt's
    raw = config_dict(
        model, train, eval_, max_steps=200, grad_accumulation=64, save_steps=1000, eval_steps=1000
    )
    out = tmp_path / "run"
    km, client = manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        message = client.execute(KERNEL_TRAIN.format(config=raw, out=str(out)))
        deadline = time.monotonic() + 240
        while '"loss"' not in (
            (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").is_file() else ""
        ):
            assert time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.3)
        km.interrupt_kernel()
        said = ""
        while True:
            reply = client.get_iopub_msg(timeout=240)
            if reply["parent_header"].get("msg_id") != message:
                continue
            if reply["msg_type"] == "stream":
                said += reply["content"]["text"]
            if reply["msg_type"] == "error":
                said += "\n".join(reply["content"]["traceback"])
            if reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
                break
    finally:
        km.shutdown_kernel(now=True)
    assert "STATUS interrupted" in said, said[-3000:]
    stopped_at = json.loads((out / "manifest.json").read_text())["global_step"]
    (checkpoint,) = checkpoint_dirs(out / "checkpoints")
    assert (
        checkpoint.name == f"checkpoint-{stopped_at}" and problem(checkpoint) is None and 0 < stopped_at < 200
    )


def test_the_quickstart_notebook_runs_and_the_tuned_model_beats_its_base(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "examples" / "notebooks" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    results = json.loads((tmp_path / "quickstart-work" / "run" / "eval" / "results.json").read_text())
    tuned, base = results["tuned"], results["base"]
    # One epoch (measured: loss 6.39 -> 1.23 nats per answer token, chrF 0.5 -> 32.7; exact match needs the
    # quickstart's four epochs): margins well inside what one epoch gives, far outside a model that did not learn.
    assert tuned["loss"] < base["loss"] - 3, (tuned, base)
    assert tuned["chrf"] > base["chrf"] + 20, (tuned, base)
    export = json.loads((tmp_path / "quickstart-work" / "export" / "export_check.json").read_text())
    assert export["passed"]
