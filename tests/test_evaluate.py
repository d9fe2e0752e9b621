"""`tuneforge eval`: base vs tuned on the run's own held-out rows, per checkpoint, the report (opened in a
real browser), generation metrics during training with the best checkpoint kept, runs/compare, lm-eval."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
import torch
from conftest import needs_shared, quick_config, write_jsonl
from safetensors.torch import load_file
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.train.run import run_finetune

runner = CliRunner()


def eval_json(*args: str) -> dict:
    result = runner.invoke(app, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


@pytest.fixture(scope="module")
def dialogsum_run(tmp_path_factory) -> Path:
    base = needs_shared("models", "stories260K")
    rows = needs_shared("data", "dialogsum", "dialogsum.dev.jsonl")
    config = quick_config(
        base,
        rows,
        data={
            "eval_path": None,
            "eval_fraction": 0.1,
            "format": "prompt_completion",
            "prompt_format": "Summarize the following conversation.\n\n{dialogue}",
            "columns": {"completion": "summary"},
            "template": "alpaca",
        },
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
        train={
            "max_steps": 40,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "max_length": "auto",
            "eval_steps": 20,
            "save_steps": 20,
            "logging_steps": 10,
        },  # fmt: skip
        eval={"max_rows": 12, "max_new_tokens": 48},
    )
    run_dir = tmp_path_factory.mktemp("dialogsum") / "run"
    run_finetune(config, run_dir)
    return run_dir


@pytest.mark.slow
def test_eval_compares_base_and_tuned_on_dialogsum_and_writes_the_report(dialogsum_run):
    results = eval_json(str(dialogsum_run), "--compare-base", "--checkpoints")
    base, tuned = results["base"], results["tuned"]
    assert results["metrics"] == ["rouge1", "rouge2", "rougeL", "bleu"], (
        "summaries: overlap metrics by default"
    )
    assert results["rows"] == 12 and {"rougeL", "loss", "perplexity"} <= base.keys() & tuned.keys()
    assert tuned["loss"] < base["loss"], (
        f"fine-tuning lowers held-out loss: {base['loss']} -> {tuned['loss']}"
    )
    assert [c["name"] for c in results["checkpoints"]] == ["checkpoint-20", "checkpoint-40"]
    assert results["checkpoints"][-1]["loss"] == pytest.approx(tuned["loss"]), (
        "the last checkpoint is the run"
    )
    folder = dialogsum_run / "eval"
    for name in ("results.json", "predictions.jsonl", "report.md", "report.html"):
        assert (folder / name).stat().st_size > 0
    pngs = sorted(folder.glob("*.png"))
    assert [p.name for p in pngs] == ["base_vs_tuned.png", "checkpoints.png", "loss.png"]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(png).ndim == 3
    page = (folder / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "nothing fetched from the network"
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page
    print(f"\nDialogSum on stories260K, 40 steps: loss {base['loss']:.3f} -> {tuned['loss']:.3f}, "
          f"ROUGE-L {base['rougeL']:.2f} -> {tuned['rougeL']:.2f}")  # fmt: skip


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_report_renders_in_headless_chromium(dialogsum_run, tmp_path):
    if not (dialogsum_run / "eval" / "report.html").is_file():
        eval_json(str(dialogsum_run), "--compare-base")
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    subprocess.run(
        [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1000,1400", (dialogsum_run / "eval" / "report.html").as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    pixels = torch.tensor(matplotlib.image.imread(shot))[..., :3]
    assert pixels.shape[0] > 500 and pixels.std() > 0.05, "a page with content, not a blank one"
    assert (pixels < 0.5).float().mean() > 0.01, "dark pixels: text and plots were drawn"


def quick_run(tiny_models, demo_files, run_dir: Path, **sections) -> Path:
    sections["eval"] = {"max_rows": 6, "max_new_tokens": 8, **sections.get("eval", {})}
    config = quick_config(tiny_models("llama"), *demo_files, **sections)
    run_finetune(config, run_dir)
    return run_dir


def test_runs_lists_runs_with_their_metrics_and_compare_shows_what_changed(tiny_models, demo_files, tmp_path):
    first = quick_run(tiny_models, demo_files, tmp_path / "runs" / "r4", train={"max_steps": 2})
    second = quick_run(
        tiny_models, demo_files, tmp_path / "runs" / "r8", train={"max_steps": 2}, lora={"r": 8}
    )
    for run in (first, second):
        eval_json(str(run))
    report = (first / "eval" / "report.md").read_text()
    for line in (f"- base model: {tiny_models('llama')}", "- steps trained: 2", "- method: sft, lora"):
        assert line in report, report  # the report says what produced it
    assert "- decoding: greedy, up to 8 new tokens" in report and "- evaluated: 20" in report
    assert (
        f"<tr><th>held-out rows</th><td>6 from {first / 'eval_split.jsonl'}"
        in (first / "eval" / "report.html").read_text()
    )
    damaged = shutil.copytree(first, tmp_path / "runs" / "r4-copy")
    (damaged / "manifest.json").write_text((damaged / "manifest.json").read_text()[:40])
    listed = runner.invoke(app, ["runs", str(tmp_path / "runs")])  # not a terminal, 80 columns
    assert listed.exit_code == 0, listed.output
    assert "3 runs" in listed.output and str(first) in listed.output and str(second) in listed.output
    assert str(tiny_models("llama")) in listed.output, "whole names in a log, not 'models…'"
    assert listed.output.count("exact_match") == 3 and listed.output.count("finished") == 2
    assert re.search(rf"{damaged}\s.*damaged", listed.output), listed.output
    used = runner.invoke(app, ["generate", str(damaged), "--prompt", "hi"])
    assert used.exit_code == 2 and "manifest.json is damaged (not valid JSON" in used.output, used.output
    assert "--resume" not in used.output and "Restore" in used.output
    compared = runner.invoke(app, ["compare", str(first), str(second)])
    assert compared.exit_code == 0, compared.output
    assert re.search(r"lora\.r\s.*4\s.*8", compared.output) and "held-out loss" in compared.output
    assert "data.path" not in compared.output, "only the keys that differ"


def test_generation_metrics_during_training_pick_the_best_checkpoint(tiny_models, demo_files, tmp_path):
    run = quick_run(
        tiny_models,
        demo_files,
        tmp_path / "run",
        train={
            "max_steps": 6,
            "eval_steps": 2,
            "save_steps": 2,
            "best_metric": "chrf",
            "keep_best": True,
            "save_total_limit": 1,
        },  # fmt: skip
        eval={"during_training": True, "sample_size": 6, "max_new_tokens": 8, "metrics": ["chrf"]},
    )
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = {r["step"]: r["eval_chrf"] for r in records if "eval_chrf" in r}
    assert sorted(scored) == [0, 2, 4, 6], "generation metrics beside every evaluation"
    manifest = json.loads((run / "manifest.json").read_text())
    best = max((2, 4, 6), key=lambda step: (scored[step], -step))
    assert manifest["best_checkpoint"] == f"checkpoint-{best}"
    assert (run / "checkpoints" / f"checkpoint-{best}").is_dir(), "the best checkpoint survives rotation"
    final = load_file(run / "adapter" / "adapter_model.safetensors")
    kept = load_file(run / "checkpoints" / f"checkpoint-{best}" / "adapter_model.safetensors")
    assert all(torch.equal(final[k], kept[k]) for k in final), "keep_best: the final adapter is the best one"


def test_lm_evaluation_harness_runs_a_local_task_on_the_tuned_model(tiny_models, demo_files, tmp_path):
    pytest.importorskip("lm_eval")
    run = quick_run(tiny_models, demo_files, tmp_path / "run", train={"max_steps": 2})
    (tmp_path / "tasks").mkdir()
    rows = write_jsonl(
        tmp_path / "tasks" / "rows.jsonl",
        [{"question": "list the files in /tmp", "choices": ["ls -la /tmp", "rm /tmp"], "label": 0},
         {"question": "delete notes.txt", "choices": ["wc -l notes.txt", "rm notes.txt"], "label": 1}],
    )  # fmt: skip
    (tmp_path / "tasks" / "shell_choice.yaml").write_text(
        "task: shell_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {rows}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        "metric_list:\n  - metric: acc\n"
    )
    args = [str(run), "--lm-eval", "shell_choice", "--lm-eval-include", str(tmp_path / "tasks")]
    results = eval_json(*args)
    accuracy = results["benchmarks"]["shell_choice"]["acc,none"]
    assert 0.0 <= accuracy <= 1.0 and results["benchmarks"]["shell_choice"]["sample_len"] == 2


def test_training_and_eval_report_one_held_out_loss(tiny_models, tmp_path):
    """One definition, token-weighted over answer tokens (and EOS): the loss training logs at its last
    evaluation equals `tuneforge eval`'s on the same rows. Rows of very different answer lengths make a
    per-batch average differ."""
    from tuneforge.eval.evaluate import evaluate_run

    rows = [{"prompt": f"say {i}", "completion": ("word " * (1 + (i % 7) * 6)).strip()} for i in range(48)]
    config = quick_config(
        tiny_models("llama"),
        write_jsonl(tmp_path / "rows.jsonl", rows),
        data={"eval_fraction": 0.25, "template": "alpaca"},
        train={"max_steps": 2, "eval_steps": 2, "save_steps": 2, "eval_batch_size": 4, "max_length": 256},
    )
    result = run_finetune(config, tmp_path / "run")
    evaluation = evaluate_run(
        tmp_path / "run", metrics=["exact_match"], compare_base=True, overrides=["eval.max_new_tokens=1"]
    )
    assert abs(result.eval_after["eval_loss"] - evaluation.tuned.loss["loss"]) < 1e-4
    assert abs(result.eval_before["eval_loss"] - evaluation.base.loss["loss"]) < 1e-4
