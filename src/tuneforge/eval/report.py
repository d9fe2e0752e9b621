"""The evaluation report: a table in the terminal, and RUN_DIR/eval/report.md plus a self-contained
report.html (images inlined, no network needed) with the loss curves, base vs tuned with differences, the
per-checkpoint curve and side-by-side samples. The plots are also saved as PNG files beside them.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tuneforge.eval.evaluate import Evaluation, Scores  # noqa: E402
from tuneforge.run.files import write_atomically  # noqa: E402
from tuneforge.run.plots import plot_loss, plot_rewards  # noqa: E402

LOWER_IS_BETTER = {"loss", "perplexity"}


def figures(scores: Scores) -> dict[str, float]:
    return {**{k: v for k, v in scores.loss.items() if k != "answer_tokens"}, **scores.metrics}


def comparison_rows(evaluation: Evaluation) -> list[tuple[str, float | None, float, float | None]]:
    """(figure, base, tuned, tuned - base) for every loss figure and metric."""
    base = figures(evaluation.base) if evaluation.base else {}
    return [
        (k, base.get(k), v, v - base[k] if k in base else None) for k, v in figures(evaluation.tuned).items()
    ]


def show_evaluation(console: Console, evaluation: Evaluation) -> None:
    table = Table(title=f"held-out evaluation: {evaluation.rows} rows (metrics 0-100)")
    for column in ("", "base", "tuned", "change"):
        table.add_column(column, justify="right" if column else "left")
    for name, base, tuned, delta in comparison_rows(evaluation):
        good = delta is not None and (delta < 0 if name in LOWER_IS_BETTER else delta > 0)
        change = "" if delta is None else f"[{'green' if good else 'red'}]{delta:+.2f}[/]"
        table.add_row(name, "" if base is None else f"{base:.2f}", f"{tuned:.2f}", change)
    console.print(table)
    if evaluation.benchmarks:
        console.print(benchmark_table(evaluation.benchmarks))
    if evaluation.checkpoints:
        per_step = Table(title="checkpoints")
        names = ["loss", *evaluation.metric_names]
        for column in ("checkpoint", *names):
            per_step.add_column(column, justify="right")
        for c in evaluation.checkpoints:
            per_step.add_row(c.name, *(f"{figures(c).get(n, float('nan')):.2f}" for n in names))
        console.print(per_step)


def benchmark_rows(benchmarks: dict[str, dict]) -> list[tuple[str, str, float]]:
    return [(task, metric, value) for task, values in benchmarks.items() for metric, value in values.items()]


def benchmark_table(benchmarks: dict[str, dict]) -> Table:
    table = Table(title="lm-evaluation-harness")
    for column in ("task", "metric", "value"):
        table.add_column(column)
    for task, metric, value in benchmark_rows(benchmarks):
        table.add_row(task, metric, f"{value:.4g}")
    return table


def plot_comparison(evaluation: Evaluation, out: Path) -> Path | None:
    if evaluation.base is None or not evaluation.metric_names:
        return None
    names = evaluation.metric_names
    fig, ax = plt.subplots(figsize=(7, 3.5))
    positions = range(len(names))
    ax.bar([p - 0.2 for p in positions], [evaluation.base.metrics[n] for n in names], 0.4, label="base")
    ax.bar([p + 0.2 for p in positions], [evaluation.tuned.metrics[n] for n in names], 0.4, label="tuned")
    ax.set_xticks(list(positions), names)
    ax.set_ylabel("score (0-100)")
    ax.legend()
    return save(fig, out)


def plot_checkpoints(evaluation: Evaluation, out: Path) -> Path | None:
    if not evaluation.checkpoints:
        return None
    steps = [c.step for c in evaluation.checkpoints]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, [c.loss.get("loss") for c in evaluation.checkpoints], "o-", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out loss", color="tab:orange")
    if evaluation.main_metric:
        other = ax.twinx()
        values = [c.metrics.get(evaluation.main_metric) for c in evaluation.checkpoints]
        other.plot(steps, values, "s-", color="tab:blue")
        other.set_ylabel(evaluation.main_metric, color="tab:blue")
    ax.set_title("held-out quality per checkpoint")
    return save(fig, out)


def save(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(evaluation: Evaluation, metrics_file: Path, folder: Path, samples: int = 10) -> list[Path]:
    """report.md, report.html and the PNGs they show; returns every file written."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [
        plot_loss(metrics_file, folder / "loss.png", title="training and held-out loss"),
        plot_rewards(metrics_file, folder / "rewards.png", title="preference rewards (train and held-out)"),
        plot_comparison(evaluation, folder / "base_vs_tuned.png"),
        plot_checkpoints(evaluation, folder / "checkpoints.png"),
    ]
    images = [image for image in images if image is not None]
    write_atomically(folder / "report.md", markdown(evaluation, images, samples))
    write_atomically(folder / "report.html", page(evaluation, images, samples))
    return [*images, folder / "report.md", folder / "report.html"]


def markdown(evaluation: Evaluation, images: list[Path], samples: int) -> str:
    lines = [
        f"# Evaluation of {evaluation.run_dir}",
        "",
        *(f"- {key}: {value}" for key, value in evaluation.about.items()),
        "",
        f"{evaluation.rows} held-out rows; metrics 0-100.",
        "",
    ]
    lines += ["| | base | tuned | change |", "| --- | --- | --- | --- |"]
    for name, base, tuned, delta in comparison_rows(evaluation):
        lines.append(
            f"| {name} | {'' if base is None else f'{base:.2f}'} | {tuned:.2f} | {'' if delta is None else f'{delta:+.2f}'} |"
        )
    if evaluation.benchmarks:
        lines += ["", "| task | metric | value |", "| --- | --- | --- |"]
        lines += [f"| {t} | {m} | {v:.4g} |" for t, m, v in benchmark_rows(evaluation.benchmarks)]
    lines += [""] + [f"![{image.stem}]({image.name})" for image in images] + ["", "## Samples", ""]
    for prompt, reference, tuned, base in sample_rows(evaluation, samples):
        lines += [
            f"**Prompt:** {prompt}",
            "",
            f"- reference: {reference}",
            f"- base: {base}",
            f"- tuned: {tuned}",
            "",
        ]
    return "\n".join(lines) + "\n"


def sample_rows(evaluation: Evaluation, samples: int) -> list[tuple[str, str, str, str]]:
    base = evaluation.base.predictions if evaluation.base else ["(not compared)"] * evaluation.rows
    rows = zip(evaluation.prompts, evaluation.references, evaluation.tuned.predictions, base)
    return list(rows)[:samples]


def page(evaluation: Evaluation, images: list[Path], samples: int) -> str:
    esc = html.escape
    cells = "".join(
        f"<tr><td>{esc(n)}</td><td>{'' if b is None else f'{b:.2f}'}</td><td>{t:.2f}</td>"
        f"<td>{'' if d is None else f'{d:+.2f}'}</td></tr>"
        for n, b, t, d in comparison_rows(evaluation)
    )
    pictures = "".join(
        f'<figure><img alt="{esc(i.stem)}" src="data:image/png;base64,{base64.b64encode(i.read_bytes()).decode()}">'
        f"<figcaption>{esc(i.stem)}</figcaption></figure>"
        for i in images
    )
    rows = "".join(
        f"<tr><td>{esc(p)}</td><td>{esc(r)}</td><td>{esc(b)}</td><td>{esc(t)}</td></tr>"
        for p, r, t, b in sample_rows(evaluation, samples)
    )
    benchmarks = (
        "<table><tr><th>task</th><th>metric</th><th>value</th></tr>"
        + "".join(
            f"<tr><td>{esc(t)}</td><td>{esc(m)}</td><td>{v:.4g}</td></tr>"
            for t, m, v in benchmark_rows(evaluation.benchmarks)
        )
        + "</table>"
        if evaluation.benchmarks
        else ""
    )
    about = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in evaluation.about.items())
    style = (
        "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:4px 8px;vertical-align:top;white-space:pre-wrap}"
        "th{background:#eee}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(evaluation.run_dir)}</title>"
        f"<style>{style}</style></head><body><h1>Evaluation of {esc(evaluation.run_dir)}</h1>"
        f"<table class='about'>{about}</table>"
        f"<p>{evaluation.rows} held-out rows; metrics 0-100.</p>"
        f"<table><tr><th></th><th>base</th><th>tuned</th><th>change</th></tr>{cells}</table>{benchmarks}{pictures}"
        f"<h2>Samples</h2><table><tr><th>prompt</th><th>reference</th><th>base</th><th>tuned</th></tr>{rows}</table>"
        "</body></html>\n"
    )
