"""The New run page: the form, the live preview (detected shape and column pickers, rendered samples with
trained tokens marked, the preflight table, the memory plan, the YAML), and Train, which is disabled, with
the reason shown, while the preview has a problem. Train re-checks everything before it launches."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import get_args

import gradio as gr

from tuneforge.config.columns import Shape
from tuneforge.config.loading import config_to_yaml
from tuneforge.config.schema import BUILTIN_TEMPLATE_NAMES
from tuneforge.errors import TuneforgeError
from tuneforge.model.plan import DEVICES
from tuneforge.studio.checks import THIS_CPU, data_columns, preview
from tuneforge.studio.form import ADAPTERS, COLUMN_FIELDS, RunForm, column_shapes
from tuneforge.studio.jobs import launch_training
from tuneforge.studio.workspace import DATA_SUFFIXES, Workspace
from tuneforge.train.methods import METHODS, recipe_for

FORM = RunForm()
DOWNLOADS = Path(tempfile.mkdtemp(prefix="tuneforge-studio-"))


class NewRunPage:
    def __init__(self, workspace: Workspace):
        self.ws = workspace

    def build_form(self) -> None:
        """The form's inputs, as attributes."""
        ws = self.ws
        with gr.Row():
            self.name = gr.Textbox(
                FORM.name, label="Run name (a folder under the runs folder)", elem_id="name"
            )
            self.base = gr.Dropdown(
                ws.models(), value=None, allow_custom_value=True, elem_id="base",
                label="Base model: a local folder, a .gguf file, or type a hub id",
            )  # fmt: skip
        with gr.Row():
            self.data = gr.Dropdown(
                ws.data_files(), value=None, allow_custom_value=True, label="Data file", elem_id="data"
            )
            self.upload = gr.UploadButton(
                "Upload a data file", file_types=list(DATA_SUFFIXES), elem_id="upload"
            )
            self.format = gr.Dropdown(
                list(get_args(Shape)), value=FORM.format, label="Row shape", elem_id="format"
            )
        self.shape = gr.Markdown(elem_id="shape")
        with gr.Row():
            self.columns = [
                gr.Dropdown(
                    [], label=f"{name} column", visible=False, allow_custom_value=True, elem_id=f"col-{name}"
                )
                for name in COLUMN_FIELDS
            ]
        with gr.Row():
            templates = ["auto", *BUILTIN_TEMPLATE_NAMES, *ws.templates()]
            self.template = gr.Dropdown(
                templates, value=FORM.template, allow_custom_value=True, elem_id="template",
                label="Template (auto: the tokenizer's chat template, else alpaca; or a .jinja file)",
            )  # fmt: skip
            self.method = gr.Dropdown(list(METHODS), value=FORM.method, label="Method", elem_id="method")
            self.adapter = gr.Radio(list(ADAPTERS), value=FORM.adapter, label="Adapter", elem_id="adapter")
        with gr.Row():
            self.r = gr.Number(FORM.r, label="LoRA r", precision=0, minimum=1)
            self.alpha = gr.Number(FORM.alpha, label="LoRA alpha")
            self.dropout = gr.Number(FORM.dropout, label="LoRA dropout", minimum=0)
            self.targets = gr.Textbox(FORM.target_modules, label="LoRA target modules (all-linear or names)")
        with gr.Row():
            self.epochs = gr.Number(FORM.epochs, label="Epochs", minimum=0)
            self.max_steps = gr.Number(FORM.max_steps, label="Max steps (0: the epochs decide)", precision=0, minimum=0, elem_id="max-steps")  # fmt: skip
            self.lr = gr.Number(FORM.learning_rate, label="Learning rate")
            self.batch = gr.Number(FORM.batch_size, label="Batch size", precision=0, minimum=1)
            self.max_length = gr.Textbox(FORM.max_length, label="Max length (tokens, or auto)")

    def build(self, run_choice: gr.Dropdown, tabs: gr.Tabs) -> None:
        self.build_form()
        self.extra = gr.Textbox(
            FORM.extra, lines=3, elem_id="extra",
            label="Extra settings: one section.key=value a line, as `tuneforge train --set` takes them",
        )  # fmt: skip
        self.device = gr.Dropdown(
            [THIS_CPU, *DEVICES], value=THIS_CPU, label="Plan the memory for", elem_id="device"
        )
        verdict = gr.Markdown(elem_id="verdict")
        with gr.Row():
            train = gr.Button("Train", variant="primary", interactive=False, elem_id="train")
            download = gr.DownloadButton("Download the YAML", elem_id="download-yaml", visible=False)
        launched = gr.Markdown(elem_id="launched")
        with gr.Row():
            data_html = gr.HTML(elem_id="data-report")
            plan_html = gr.HTML(elem_id="plan")
        yaml = gr.Code(
            language="yaml", label="config.yaml (what `tuneforge train` reads)", max_lines=30, elem_id="yaml"
        )

        fields = self.fields()
        preview_out = [verdict, train, data_html, plan_html, yaml, download]
        columns_out = [self.shape, *self.columns]
        self.upload.upload(self.uploaded, self.upload, self.data)
        for picker in (self.data, self.format, self.method):
            picker.change(self.pickers, fields, columns_out, trigger_mode="always_last")
        gr.on(
            [c.change for c in [*fields, self.device]],
            self.preview,
            [*fields, self.device],
            preview_out,
            trigger_mode="always_last",
            concurrency_limit=1,
        )
        train.click(self.train, fields, [launched, run_choice, tabs])

    def fields(self) -> list:
        return [
            self.name, self.base, self.data, self.format, self.template, self.method, self.adapter, self.r,
            self.alpha, self.dropout, self.targets, self.epochs, self.max_steps, self.lr, self.batch,
            self.max_length, self.extra, *self.columns,
        ]  # fmt: skip

    @staticmethod
    def form(values: tuple) -> RunForm:
        (name, base, data, fmt, template, method, adapter, r, alpha, dropout, targets, epochs, max_steps, lr,
         batch, max_length, extra, *columns) = values  # fmt: skip
        return RunForm(
            name=(name or "").strip(), base=base or "", data=data or "", format=fmt, template=template or "auto",
            method=method, adapter=adapter, r=int(r or 1), alpha=float(alpha or 0), dropout=float(dropout or 0),
            target_modules=targets or "", epochs=float(epochs or 0), max_steps=int(max_steps or 0),
            learning_rate=float(lr or 0), batch_size=int(batch or 1), max_length=max_length or "auto",
            extra=extra or "", columns={k: v for k, v in zip(COLUMN_FIELDS, columns) if v},
        )  # fmt: skip

    def uploaded(self, file) -> gr.Dropdown:
        saved = self.ws.relative(self.ws.save_upload(Path(file)))
        return gr.Dropdown(choices=self.ws.data_files(), value=saved)

    def pickers(self, *values):
        """The detected shape, and one column picker per column that shape (or the method) reads."""
        form = self.form(values)
        try:
            note, found = data_columns(form, self.ws)
        except TuneforgeError as exc:
            note, found = str(exc), []
        shape = note.removeprefix("detected: ") if form.format == "auto" else form.format
        pairs = recipe_for(form.method).section == "preference"
        updates = []
        for name in COLUMN_FIELDS:
            shapes = column_shapes(name)
            wanted = bool(found) and (shape in shapes or (pairs and not set(shapes) & set(get_args(Shape))))
            current = form.columns.get(name) or name
            updates.append(
                gr.Dropdown(choices=found, value=current if current in found else None, visible=wanted)
            )
        return [f"**Data:** {note}" + (f" · columns: {', '.join(found)}" if found else ""), *updates]

    def preview(self, *values):
        *fields, device = values
        form = self.form(tuple(fields))
        result = preview(form, self.ws, device)
        ok = result.problem is None
        verdict = (
            "✅ **Ready to train**: preflight passed" if ok else f"⛔ **Train is disabled**: {result.problem}"
        )
        download = gr.DownloadButton(visible=False)
        if result.config is not None:
            path = (
                DOWNLOADS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', form.name) or 'run'}.yaml"
            )  # a name, never a path
            path.write_text(result.yaml)
            download = gr.DownloadButton(value=str(path), visible=True)
        return verdict, gr.Button(interactive=ok), result.data_html, result.plan_html, result.yaml, download

    def train(self, *values):
        """Check again (the page may be stale), write studio/NAME.yaml, launch `tuneforge train`."""
        form = self.form(values)
        try:
            if not form.name or "/" in form.name or form.name.startswith("."):
                raise TuneforgeError(
                    "Run name: a folder name, without / (the run goes under the runs folder)"
                )
            result = preview(form, self.ws, THIS_CPU)
            if result.problem:
                raise TuneforgeError(result.problem)
            config_file = self.ws.studio / f"{form.name}.yaml"
            config_file.parent.mkdir(parents=True, exist_ok=True)
            config_file.write_text(config_to_yaml(result.config))
            run_dir = self.ws.runs / form.name
            pid = launch_training(self.ws, config_file, run_dir)
        except TuneforgeError as exc:
            return f"⛔ {exc}", gr.Dropdown(), gr.Tabs()
        run = self.ws.relative(run_dir)
        note = f"Started `tuneforge train {self.ws.relative(config_file)} --output-dir {run}` (pid {pid})."
        return note, gr.Dropdown(choices=self.ws.run_dirs(), value=run), gr.Tabs(selected="runs")
