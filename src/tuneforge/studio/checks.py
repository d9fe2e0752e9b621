"""What the New run page shows as settings change: the detected row shape and columns of the data file,
then the rendered samples with trained tokens marked and the preflight table (`tuneforge data`), and the
memory plan for a GPU or this CPU (`tuneforge plan`): the CLI's own reports, recorded as HTML.

A preview with a `problem` (a config error, a data error, a failed preflight check) may not start a run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from tuneforge.config.loading import config_to_yaml
from tuneforge.config.schema import DataConfig, RunConfig
from tuneforge.data.shapes import detect_format
from tuneforge.data.sources import looks_local, read_file
from tuneforge.errors import TuneforgeError, os_fault
from tuneforge.model.report import show_plan
from tuneforge.studio.form import RunForm
from tuneforge.studio.workspace import Workspace
from tuneforge.train.planning import plan_run
from tuneforge.train.preview import show_report

THIS_CPU = "this CPU"
SAMPLES = 2
PRE = '<pre style="font-family:ui-monospace,monospace;font-size:12.5px;line-height:1.35;white-space:pre-wrap">{code}</pre>'


@dataclass
class Preview:
    problem: str | None  # why a run cannot start; None: it may
    yaml: str = ""  # what `tuneforge train` will read
    data_html: str = ""
    plan_html: str = ""
    config: RunConfig | None = None


def recorded(draw: Callable[[Console], None]) -> tuple[str, str | None]:
    """What `draw` prints on a terminal, as HTML with its colours, and the error it raised (printed in red
    too), as the CLI would word it."""
    console = Console(
        record=True, width=118, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    error = None
    try:
        draw(console)
    except Exception as exc:  # noqa: BLE001 - the page shows every failure; the studio keeps running
        fault = exc if isinstance(exc, TuneforgeError) else os_fault(exc)
        error = str(fault) if fault is not None else f"{type(exc).__name__}: {exc}"
        console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
    return console.export_html(inline_styles=True, code_format=PRE), error


def data_columns(form: RunForm, workspace: Workspace) -> tuple[str, list[str]]:
    """(what the shape is, the file's columns) for the pickers; the shape as `data.format: auto` finds it."""
    if not form.data.strip():
        return "choose a data file", []
    path = workspace.inside(form.data, "Data file")
    if not looks_local(str(path)) or not path.is_file():
        return f"{form.data}: not a file in the workspace (a hub dataset is read when the run starts)", []
    columns = list(read_file(path).column_names)
    data = DataConfig(path=str(path), format=form.format, columns=form.columns)
    try:
        shape = detect_format(columns, data)
    except TuneforgeError as exc:
        return str(exc), columns
    return (f"detected: {shape}" if form.format == "auto" else shape), columns


def preview(form: RunForm, workspace: Workspace, device: str) -> Preview:
    """The whole check a launch needs; the plan is shown but never stops a run (it is an estimate)."""
    try:
        config = form.config(workspace)
    except TuneforgeError as exc:
        return Preview(problem=str(exc))
    failures: list[str] = []

    def data(console: Console) -> None:
        report = show_report(console, config, SAMPLES)
        failures.extend(
            f"{c['check']}: {c['finding']}"
            for c in report["preflight"]
            if not c["passed"] and c["severity"] == "error"
        )

    data_html, error = recorded(data)
    if error:
        failures.append(error)
    gpu = None if device == THIS_CPU else device
    plan_html, _ = recorded(
        lambda console: show_plan(console, plan_run(config, gpu, 1, notice=console.print))
    )
    problem = "preflight failed: " + "; ".join(failures) if failures else None
    return Preview(problem, config_to_yaml(config), data_html, plan_html, config)
