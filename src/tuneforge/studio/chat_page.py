"""The Chat page: `tuneforge app`'s chat (serve/webapp.py: streaming, base vs tuned side by side) on any
finished run or export of the workspace, loaded when picked. One model set is loaded at a time."""

from __future__ import annotations

import threading

import gradio as gr

from tuneforge.config.schema import ServeConfig
from tuneforge.errors import TuneforgeError, os_fault
from tuneforge.infer.engine import Engine
from tuneforge.run.directory import RunDir
from tuneforge.serve.server import open_engine
from tuneforge.serve.webapp import chat_panel
from tuneforge.studio.workspace import Workspace


class ChatPage:
    def __init__(self, workspace: Workspace):
        self.ws = workspace
        self.engine: Engine | None = None
        self.lock = threading.Lock()

    def choices(self) -> list[str]:
        finished = [r for r in self.ws.run_dirs() if RunDir(self.ws.root / r).status() == "finished"]
        return finished + self.ws.export_dirs()

    def build(self) -> None:
        with gr.Row():
            source = gr.Dropdown(
                self.choices(),
                label="A finished run or an export",
                allow_custom_value=True,
                elem_id="chat-source",
            )
            load = gr.Button("Load", elem_id="chat-load")
        loaded = gr.Markdown(elem_id="chat-loaded")
        model = chat_panel(lambda: self.engine, ServeConfig().max_new_tokens)
        load.click(self.load, source, [loaded, model])
        source.focus(lambda: gr.Dropdown(choices=self.choices()), None, source)

    def load(self, source: str | None):
        try:
            path = self.ws.inside(source or "", "Chat model")
            with self.lock:  # one model set in memory at a time: the old one goes before the new one loads
                if self.engine is not None:
                    self.engine.stop()
                    self.engine = None
                engine = self.engine = open_engine([path], [])
        except Exception as exc:  # noqa: BLE001 - the page says what failed; the studio keeps running
            fault = exc if isinstance(exc, TuneforgeError) else os_fault(exc)
            return f"⛔ {fault or f'{type(exc).__name__}: {exc}'}", gr.Dropdown(choices=[], value=None)
        names = list(engine.served)
        tuned = [n for n in names if engine.served[n].base_name] or names
        return f"loaded {source}: {', '.join(names)}", gr.Dropdown(choices=names, value=tuned[0])
