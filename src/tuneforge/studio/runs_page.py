"""The Runs page: the `tuneforge runs` table, and the chosen run as it trains: status, step of total, ETA,
the loss and held-out curves (rewards for preference and GRPO runs) and the console tail, refreshed every
couple of seconds from the run directory; Stop (SIGINT, as Ctrl-C) and Resume."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from tuneforge.errors import TuneforgeError
from tuneforge.eval.runs import RUN_COLUMNS, find_runs, run_row
from tuneforge.studio.jobs import resume_run, stop_run
from tuneforge.studio.watch import watch
from tuneforge.studio.workspace import Workspace

REFRESH_S = 2.0


class RunsPage:
    def __init__(self, workspace: Workspace):
        self.ws = workspace

    def build(self, run_choice: gr.Dropdown) -> None:
        table = gr.Dataframe(headers=list(RUN_COLUMNS), label="runs", interactive=False, elem_id="runs-table")
        headline = gr.Markdown(elem_id="run-status")
        with gr.Row():
            stop = gr.Button("Stop (a checkpoint, as Ctrl-C)", variant="stop", elem_id="stop")
            resume = gr.Button("Resume", elem_id="resume")
        action = gr.Markdown(elem_id="run-action")
        with gr.Row():
            losses = gr.LinePlot(
                x="step", y="value", color="curve", title="loss", label="loss", elem_id="loss-chart"
            )
            rewards = gr.LinePlot(
                x="step", y="value", color="curve", title="rewards", visible=False, elem_id="reward-chart"
            )
        console = gr.Textbox(label="console", lines=14, max_lines=14, autoscroll=True, elem_id="console")
        outputs = [table, headline, losses, rewards, console]
        gr.Timer(REFRESH_S).tick(self.refresh, run_choice, outputs, show_progress="hidden")
        run_choice.change(self.refresh, run_choice, outputs, show_progress="hidden")
        stop.click(self.stop, run_choice, action)
        resume.click(self.resume, run_choice, action)

    def table(self) -> pd.DataFrame:
        runs = find_runs(self.ws.runs) if self.ws.runs.is_dir() else []
        rows = [[self.ws.relative(run.path), *run_row(run)[1:]] for run in runs]
        return pd.DataFrame(rows, columns=list(RUN_COLUMNS))

    def refresh(self, run: str | None):
        if not run:
            return self.table(), "choose a run above", gr.LinePlot(), gr.LinePlot(visible=False), ""
        view = watch(self.ws.inside(run, "Run"), self.ws)
        return (
            self.table(),
            view.headline(),
            gr.LinePlot(value=view.losses, caption=view.points()),
            gr.LinePlot(value=view.rewards, visible=not view.rewards.empty),
            view.console,
        )

    def stop(self, run: str | None) -> str:
        try:
            pid = stop_run(self.ws.inside(run or "", "Run"))
        except TuneforgeError as exc:
            return f"⛔ {exc}"
        return f"Asked pid {pid} to stop: it finishes its step and writes a checkpoint."

    def resume(self, run: str | None) -> str:
        try:
            pid = resume_run(self.ws, self.ws.inside(run or "", "Run"))
        except TuneforgeError as exc:
            return f"⛔ {exc}"
        return f"Resuming {run} (pid {pid})."
