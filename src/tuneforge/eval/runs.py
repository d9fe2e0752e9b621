"""`tuneforge runs [DIR]` lists the runs in a folder with their results; `tuneforge compare A B` shows what
differs between two runs: their config keys and their held-out figures.

    tuneforge runs runs/
    tuneforge compare runs/r16 runs/r64
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from tuneforge.errors import TuneforgeError
from tuneforge.run.directory import RunDir
from tuneforge.run.manifest import read_manifest
from tuneforge.run.metrics import read_metrics


@dataclass
class RunSummary:
    path: Path
    status: str
    config: dict
    steps: int | None
    heldout_loss: float | None
    figures: dict[str, float]  # from the last `tuneforge eval`: loss, perplexity and the metrics
    main_metric: str | None


def summarize(run: RunDir) -> RunSummary:
    config = yaml.safe_load(run.config.read_text()) if run.config.is_file() else {}
    evals = [r["eval_loss"] for r in read_metrics(run.metrics) if "eval_loss" in r]
    results_file = run.evaluation / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    tuned = {k: v for k, v in (results.get("tuned") or {}).items() if isinstance(v, (int, float))}
    tuned.pop("step", None)
    return RunSummary(
        run.root,
        run.status(),
        config,
        read_manifest(run.manifest).get("global_step"),
        evals[-1] if evals else None,
        tuned,
        results.get("main_metric"),
    )


def find_runs(folder: Path) -> list[RunSummary]:
    if not folder.is_dir():
        raise TuneforgeError(f"{folder} is not a folder of runs")
    runs = sorted({m.parent for m in folder.rglob("manifest.json")})
    # a damaged manifest is listed as such: left out, the run would seem lost
    return [summarize(RunDir(r)) for r in runs if RunDir(r).is_tuneforge_run() or RunDir(r).damage()]


def fmt(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


RUN_COLUMNS = ("run", "model", "data", "method", "r", "steps", "held-out loss", "main metric", "status")


def run_row(run: RunSummary) -> list[str]:
    """One run as `tuneforge runs` and the studio's Runs page list it (RUN_COLUMNS)."""
    data, lora = run.config.get("data", {}), run.config.get("lora", {})
    metric = f"{run.main_metric} {run.figures[run.main_metric]:.2f}" if run.main_metric in run.figures else ""
    return [
        str(run.path),
        str(run.config.get("model", {}).get("name_or_path", "")),
        str(data.get("path") or f"mix of {len(data.get('mix', []))}"),
        str(lora.get("method", "")),
        fmt(lora.get("r")) if lora.get("method") == "lora" else "",
        fmt(run.steps),
        fmt(run.heldout_loss),
        metric,
        run.status,
    ]


def show_runs(console: Console, runs: list[RunSummary]) -> None:
    table = Table(title=f"{len(runs)} runs")
    for column in RUN_COLUMNS:
        table.add_column(column)
    for run in runs:
        table.add_row(*run_row(run))
    console.print(table)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return flat


def compare(
    a: RunSummary, b: RunSummary
) -> tuple[list[tuple[str, object, object]], list[tuple[str, float, float]]]:
    """(key, A, B) for every config key that differs; (figure, A, B) for the figures both have."""
    fa, fb = flatten(a.config), flatten(b.config)
    keys = [(k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]
    both = {"held-out loss": (a.heldout_loss, b.heldout_loss)} | {
        k: (a.figures[k], b.figures[k]) for k in a.figures if k in b.figures
    }
    figures = [(k, x, y) for k, (x, y) in both.items() if x is not None and y is not None]
    return keys, figures


def show_compare(console: Console, a: RunSummary, b: RunSummary) -> None:
    keys, figures = compare(a, b)
    table = Table(title=f"config: {a.path} vs {b.path}")
    for column in ("key", "A", "B"):
        table.add_column(column)
    for key, x, y in keys:
        table.add_row(key, fmt(x), fmt(y))
    console.print(table if keys else "the configs are the same")
    results = Table(title="held-out figures")
    for column in ("figure", "A", "B", "B - A"):
        results.add_column(column, justify="right")
    for name, x, y in figures:
        results.add_row(name, f"{x:.4g}", f"{y:.4g}", f"{y - x:+.4g}")
    console.print(results if figures else "no figures to compare: run `tuneforge eval` on both runs")
