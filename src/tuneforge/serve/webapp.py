"""`tuneforge app RUN [RUN ...]`: a Gradio chat with a model picker, generation settings, streaming, and a
"base vs tuned" mode that answers each message with the tuned model and its base side by side."""

from __future__ import annotations

import errno
import queue
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from rich.console import Console

from tuneforge.data.shapes import content_text
from tuneforge.errors import TuneforgeError
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import Engine
from tuneforge.serve.access import (
    APP_AUTH_ENV,
    check_exposure,
    check_port,
    port_problem,
    reach,
    read_app_logins,
)
from tuneforge.serve.server import open_engine


def stream_pair(engine: Engine, jobs: dict[str, list[int]], decoding: Decoding) -> Iterator[dict[str, str]]:
    """Submit one request per model name (its prompt ids) and yield every model's text so far, as it grows."""
    events: dict[str, queue.Queue] = {name: queue.Queue() for name in jobs}
    texts = dict.fromkeys(jobs, "")
    submitted = [engine.submit(name, ids, decoding, events[name].put) for name, ids in jobs.items()]
    running = set(jobs)
    try:
        while running:
            for name in list(running):
                try:
                    event = events[name].get(timeout=0.05)
                except queue.Empty:
                    continue
                texts[name] += event.delta
                if event.finish_reason in ("error", "timeout"):
                    texts[name] += f"\n\n[{event.error or 'timed out'}]"
                if event.finish_reason is not None:
                    running.discard(name)
                yield dict(texts)
    finally:  # Gradio closes the generator when the user stops or leaves: free the rows
        for job in submitted:
            job.cancel()


def plain(history: list[dict]) -> list[dict]:
    """Chat history as the encoder takes it: Gradio 6 hands message content back as a list of parts."""

    # joined as training joins content parts, so the app's prompt is the trained prompt
    return [{"role": m["role"], "content": content_text(m["content"], "a message")} for m in history]


def build_app(engine: Engine):
    import gradio as gr

    with gr.Blocks(title="tuneforge") as app:
        gr.Markdown("## tuneforge chat")
        chat_panel(lambda: engine, engine.limits.max_new_tokens)
    return app


def respond(current, message, tuned_history, base_history, name, compare, temperature, top_p, max_tokens):
    """One chat turn, streamed: the tuned model's answer and, with `compare`, its base's to the same prompt."""
    engine = current()
    if not message.strip() or engine is None or name not in engine.served:
        yield "", tuned_history, base_history
        return
    tuned_history, base_history = plain(tuned_history), plain(base_history)
    base_name = engine.served[name].base_name if compare else None
    decoding = Decoding(max_new_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p))
    user = {"role": "user", "content": message}
    # The base is prompted as the tuned model is (its template and system prompt), as eval does.
    jobs = {name: engine.chat_ids(name, [*tuned_history, user])}
    if base_name:
        jobs[base_name] = engine.chat_ids(name, [*base_history, user])
    for texts in stream_pair(engine, jobs, decoding):
        tuned = [*tuned_history, user, {"role": "assistant", "content": texts[name]}]
        base = (
            [*base_history, user, {"role": "assistant", "content": texts[base_name]}]
            if base_name
            else base_history
        )
        yield "", tuned, base


def chat_panel(current: Callable[[], Engine | None], max_new_tokens: int):
    """The chat's controls inside the Blocks being built: model picker, base-vs-tuned switch, decoding
    settings, the two chats. `current()` is the engine answering (the studio swaps it as the user loads
    another run); returns the model picker, whose choices follow the engine."""
    import gradio as gr

    engine = current()
    names = list(engine.served) if engine else []
    tuned_names = [n for n in names if engine.served[n].base_name] or names

    with gr.Row():
        model = gr.Dropdown(names, value=tuned_names[0] if names else None, label="Model", elem_id="model")
        compare = gr.Checkbox(
            False, label="Base vs tuned (answers with the model's base too)", elem_id="compare"
        )
    with gr.Row():
        temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0: greedy)")
        top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top p")
        max_tokens = gr.Slider(
            1,
            max_new_tokens,
            value=min(128, max_new_tokens),
            step=1,
            label="Max new tokens",
            elem_id="max-tokens",
        )
    with gr.Row():
        tuned_chat = gr.Chatbot(label="Model", elem_id="tuned-chat")
        base_chat = gr.Chatbot(label="Base", visible=False, elem_id="base-chat")
    message = gr.Textbox(label="Message", placeholder="Type a message and press Enter", elem_id="message")
    clear = gr.Button("Clear")
    inputs = [message, tuned_chat, base_chat, model, compare, temperature, top_p, max_tokens]
    answering = message.submit(partial(respond, current), inputs, [message, tuned_chat, base_chat])
    compare.change(lambda on: gr.update(visible=on), compare, base_chat)
    for control in (clear.click, model.change):  # a new model or a clear stops the answer being written
        control(lambda: ([], []), None, [tuned_chat, base_chat], cancels=[answering])
    return model


def run_app(
    paths: list[Path],
    *,
    host: str,
    port: int,
    auth: str | None = None,
    auth_file: Path | None = None,
    overrides: list[str],
    trust_remote_code: bool,
    console: Console,
    allow_base_change: bool = False,
) -> None:
    """`tuneforge app`: the models behind the Gradio chat until it is stopped. Without a login it answers
    this machine only."""
    logins = read_app_logins(auth, auth_file)
    how = f"set ${APP_AUTH_ENV}=USER:PASSWORD (or --auth-file PATH; --auth shows in `ps`)"
    check_exposure(host, bool(logins), how)
    check_port(host, port)
    engine = open_engine(paths, overrides, trust_remote_code, allow_base_change)
    login = "login required" if logins else "no login"
    console.print(
        f"app on http://{host}:{port} ({reach(host)}, {login}) · models: {', '.join(engine.served)}",
        highlight=False,
    )
    try:
        # share=False said outright: left unset, Gradio reads GRADIO_SHARE=True from the environment and
        # opens a public link through its relay.
        build_app(engine).launch(
            server_name=host, server_port=port, auth=logins or None, share=False, quiet=True
        )
    except OSError as exc:
        # Gradio's own words name launch()'s parameters; no errno: the port was taken since check_port.
        raise TuneforgeError(port_problem(host, port, exc.errno or errno.EADDRINUSE)) from None
