"""Commands that use a trained model: chat (terminal), app (Gradio), serve (OpenAI-compatible HTTP)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tuneforge.cli import app, console, user_errors
from tuneforge.errors import TuneforgeError

TRUST = typer.Option(False, "--trust-remote-code", help="Allow the model code a run's config asks to run.")
SET = typer.Option([], "--set", help="Override a serve limit: --set serve.max_batch_size=8.")


@app.command()
def chat(
    run_dir: Path = typer.Argument(..., help="A finished run directory or an hf export."),
    set_: list[str] = SET,
    trust_remote_code: bool = TRUST,
) -> None:
    """Chat in the terminal: streamed answers, multi-turn, /reset, /system, /set, /exit."""
    from tuneforge.serve.chat import chat_loop
    from tuneforge.serve.server import open_engine

    with user_errors():
        engine = open_engine([run_dir], set_, trust_remote_code)
        chat_loop(engine, run_dir.resolve().name, console)


@app.command(name="app")
def web_app(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run directories (adapters on one base share it) or hf exports."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the app to your network."),
    port: int = typer.Option(7860, help="Port."),
    set_: list[str] = SET,
    trust_remote_code: bool = TRUST,
) -> None:
    """A Gradio chat: model picker, settings, streaming, base vs tuned side by side."""
    from tuneforge.serve.server import open_engine
    from tuneforge.serve.webapp import build_app

    with user_errors():
        engine = open_engine(run_dirs, set_, trust_remote_code)
        console.print(f"app on http://{host}:{port} · models: {', '.join(engine.served)}", highlight=False)
        build_app(engine).launch(server_name=host, server_port=port, quiet=True)


@app.command()
def serve(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run directories (adapters on one base share it) or hf exports."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server to your network."
    ),
    port: int = typer.Option(8000, help="Port."),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Require this key (Authorization: Bearer KEY); default $TUNEFORGE_API_KEY."
    ),
    set_: list[str] = SET,
    trust_remote_code: bool = TRUST,
) -> None:
    """An OpenAI-compatible server: /v1/models, /v1/chat/completions, /v1/completions (streaming too)."""
    from tuneforge.serve.server import open_engine, run_server

    with user_errors():
        key = api_key or os.environ.get("TUNEFORGE_API_KEY") or None
        if host not in ("127.0.0.1", "localhost", "::1") and key is None:
            console.print(
                "[yellow]warning:[/] serving beyond this machine without --api-key", highlight=False
            )
        engine = open_engine(run_dirs, set_, trust_remote_code)
        console.print(
            f"serving {', '.join(engine.served)} on http://{host}:{port}/v1 "
            f"({'key required' if key else 'no key'})",
            highlight=False,
        )
        if not engine.served:
            raise TuneforgeError("nothing to serve")
        run_server(engine, host, port, key)
