"""The Evaluate, Export and Compare pages. Evaluate and Export run `tuneforge eval` / `tuneforge export` as
child processes with their console streamed to the page, then show what they wrote: the base-vs-tuned
report (RUN/eval/), the export check's verdict (OUT/export_check.json). Compare is `tuneforge compare`."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd

from tuneforge.errors import TuneforgeError
from tuneforge.eval.runs import compare, fmt, summarize
from tuneforge.export.check import CheckResult, summary
from tuneforge.export.formats import FORMATS
from tuneforge.export.options import DEFAULT_FORMAT, DTYPE_CHOICES
from tuneforge.run.directory import RunDir
from tuneforge.studio.jobs import stream_command
from tuneforge.studio.workspace import Workspace

FIGURES = ["figure", "base", "tuned"]


def figures_table(results: dict) -> pd.DataFrame:
    tuned, base = results.get("tuned") or {}, results.get("base") or {}
    names = [k for k, v in tuned.items() if isinstance(v, (int, float)) and k != "step"]
    return pd.DataFrame([[k, fmt(base.get(k)), fmt(tuned[k])] for k in names], columns=FIGURES)


def evaluation(run: Path) -> tuple[pd.DataFrame, str | None, str]:
    """What the last `tuneforge eval` of `run` wrote: its figures, the base-vs-tuned chart, the report."""
    folder = RunDir(run).evaluation
    results = folder / "results.json"
    if not results.is_file():
        return pd.DataFrame(columns=FIGURES), None, "no evaluation yet"
    chart = folder / "base_vs_tuned.png"
    report = folder / "report.md"
    text = report.read_text() if report.is_file() else ""
    # The report's images are files beside it: the chart is shown on its own, the links would be broken.
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("!["))
    return figures_table(json.loads(results.read_text())), str(chart) if chart.is_file() else None, text


def export_verdict(out: Path) -> str:
    check = out / "export_check.json"
    if not check.is_file():
        return "no export check was written"
    result = CheckResult(**json.loads(check.read_text()))
    verdict = "✅ **check passed**" if result.passed else "⛔ **check FAILED**"
    return f"{verdict}: {summary(result)}\n\nwritten to `{out}` ({result.format}, {result.weights})"


class ResultPages:
    def __init__(self, workspace: Workspace):
        self.ws = workspace

    def build_evaluate(self, run_choice: gr.Dropdown) -> None:
        with gr.Row():
            base = gr.Checkbox(True, label="Compare with the base model", elem_id="eval-base")
            checkpoints = gr.Checkbox(False, label="Score every checkpoint", elem_id="eval-checkpoints")
            go = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
        console = gr.Textbox(label="console", lines=8, max_lines=8, autoscroll=True, elem_id="eval-console")
        figures = gr.Dataframe(headers=FIGURES, label="held-out figures", elem_id="eval-figures")
        with gr.Row():
            chart = gr.Image(label="base vs tuned", type="filepath", elem_id="eval-chart")
            report = gr.Markdown(elem_id="eval-report")
        go.click(self.evaluate, [run_choice, base, checkpoints], [console, figures, chart, report])
        run_choice.change(lambda run: self.shown(run), run_choice, [figures, chart, report])

    def shown(self, run: str | None):
        return evaluation(self.ws.inside(run, "Run")) if run else (pd.DataFrame(columns=FIGURES), None, "")

    def evaluate(self, run: str | None, base: bool, checkpoints: bool):
        if not run:
            yield "choose a run above", *self.shown(None)
            return
        arguments = [
            "eval",
            run,
            *(["--compare-base"] if base else []),
            *(["--checkpoints"] if checkpoints else []),
        ]
        text = ""
        for text, _ in stream_command(self.ws, arguments):
            yield text, gr.Dataframe(), gr.Image(), gr.Markdown()
        yield text, *self.shown(run)

    def build_export(self, run_choice: gr.Dropdown) -> None:
        with gr.Row():
            fmt_ = gr.Dropdown(list(FORMATS), value=DEFAULT_FORMAT, label="Format", elem_id="export-format")
            dtype = gr.Dropdown(list(DTYPE_CHOICES), value="auto", label="dtype (hf weights)")
            quant = gr.Textbox("f16", label="GGUF type (gguf, ollama)")
            out = gr.Textbox("", label="Folder (default exports/RUN-FORMAT)", elem_id="export-out")
            overwrite = gr.Checkbox(False, label="Replace an earlier export there")
        go = gr.Button("Export", variant="primary", elem_id="export")
        console = gr.Textbox(label="console", lines=8, max_lines=8, autoscroll=True, elem_id="export-console")
        verdict = gr.Markdown(elem_id="export-verdict")
        go.click(self.export, [run_choice, fmt_, dtype, quant, out, overwrite], [console, verdict])

    def export(self, run: str | None, fmt_: str, dtype: str, quant: str, out: str, overwrite: bool):
        try:
            run = self.ws.relative(self.ws.inside(run or "", "Run"))
            folder = self.ws.inside(out or f"exports/{Path(run).name}-{fmt_}", "Export folder")
        except TuneforgeError as exc:
            yield "", f"⛔ {exc}"
            return
        arguments = ["export", run, "--out", self.ws.relative(folder), "--format", fmt_, "--dtype", dtype]
        arguments += ["--quant", quant, *(["--overwrite"] if overwrite else [])]
        step: tuple[str, int | None] = ("", None)
        for step in stream_command(self.ws, arguments):
            yield step[0], ""
        text, code = step
        yield (
            text,
            export_verdict(folder) if code == 0 else f"⛔ the export failed (exit {code}): see the console",
        )

    def build_compare(self, runs: list[str]) -> list[gr.Dropdown]:
        """Returns the two run pickers (the studio keeps their lists current)."""
        with gr.Row():
            a = gr.Dropdown(runs, label="Run A", elem_id="compare-a", allow_custom_value=True)
            b = gr.Dropdown(runs, label="Run B", elem_id="compare-b", allow_custom_value=True)
            go = gr.Button("Compare", elem_id="compare-go")
        note = gr.Markdown(elem_id="compare-note")
        keys = gr.Dataframe(
            headers=["key", "A", "B"], label="config keys that differ", elem_id="compare-keys"
        )
        figures = gr.Dataframe(headers=["figure", "A", "B", "B - A"], label="held-out figures")
        go.click(self.compare, [a, b], [note, keys, figures])
        return [a, b]

    def compare(self, a: str | None, b: str | None):
        try:
            runs = [RunDir(self.ws.inside(path or "", "Run")) for path in (a, b)]
            for run in runs:
                if not run.is_tuneforge_run():
                    raise TuneforgeError(f"{run.root} is not a tuneforge run directory")
        except TuneforgeError as exc:
            return f"⛔ {exc}", None, None
        keys, figures = compare(summarize(runs[0]), summarize(runs[1]))
        note = f"{len(keys)} config keys differ" if keys else "the configs are the same"
        key_rows = pd.DataFrame([[k, fmt(x), fmt(y)] for k, x, y in keys], columns=["key", "A", "B"])
        figure_rows = [[n, f"{x:.4g}", f"{y:.4g}", f"{y - x:+.4g}"] for n, x, y in figures]
        return note, key_rows, pd.DataFrame(figure_rows, columns=["figure", "A", "B", "B - A"])
