"""Commands that use a trained model: chat (terminal), app (Gradio), serve (OpenAI-compatible HTTP); and
studio, the web app over every stage."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app, console, user_errors

TRUST = typer.Option(False, "--trust-remote-code", help="Allow the model code a run's config asks to run.")
SET = typer.Option([], "--set", help="Override a serve limit: --set serve.max_batch_size=8.")
AUTH_FILE = typer.Option(
    None, "--auth-file", help="A file of logins, one USER:PASSWORD a line (keep it private)."
)
BASE_CHANGE = typer.Option(
    False,
    "--allow-base-change",
    help="Use runs although their base model changed since they were trained (a warning says what changed).",
)


@app.command()
def chat(
    run_dir: Path = typer.Argument(..., help="A finished run directory or an hf export."),
    set_: list[str] = SET,
    trust_remote_code: bool = TRUST,
    allow_base_change: bool = BASE_CHANGE,
) -> None:
    """Chat in the terminal: streamed answers, multi-turn, /reset, /system, /set, /exit."""
    from tuneforge.serve.chat import run_chat

    with user_errors():
        run_chat(run_dir, set_, trust_remote_code, console, allow_base_change)


@app.command(name="app")
def web_app(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run directories (adapters on one base share it) or hf exports."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the app to your network (needs a login)."
    ),
    port: int = typer.Option(7860, min=1, max=65535, help="Port."),
    auth: str | None = typer.Option(
        None,
        "--auth",
        help="Ask for this login: USER:PASSWORD. It shows in `ps`: prefer $TUNEFORGE_APP_AUTH or --auth-file.",
    ),
    auth_file: Path | None = AUTH_FILE,
    set_: list[str] = SET,
    trust_remote_code: bool = TRUST,
    allow_base_change: bool = BASE_CHANGE,
) -> None:
    """A Gradio chat: model picker, settings, streaming, base vs tuned side by side."""
    from tuneforge.serve.webapp import run_app

    with user_errors():
        run_app(
            run_dirs,
            host=host,
            port=port,
            auth=auth,
            auth_file=auth_file,
            overrides=set_,
            trust_remote_code=trust_remote_code,
            allow_base_change=allow_base_change,
            console=console,
        )


@app.command()
def serve(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run directories (adapters on one base share it) or hf exports."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server to your network (needs a key)."
    ),
    port: int = typer.Option(8000, min=1, max=65535, help="Port."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="Require this key (Authorization: Bearer KEY). It shows in `ps`: prefer $TUNEFORGE_API_KEY "
        "or --api-key-file.",
    ),
    api_key_file: Path | None = typer.Option(
        None, "--api-key-file", help="Require the key this file holds (keep it private)."
    ),
    set_: list[str] = SET,
    trust_remote_code: bool = TRUST,
    allow_base_change: bool = BASE_CHANGE,
) -> None:
    """An OpenAI-compatible server: /v1/models, /v1/chat/completions, /v1/completions (streaming too)."""
    from tuneforge.serve.server import serve_models

    with user_errors():
        serve_models(
            run_dirs,
            host=host,
            port=port,
            api_key=api_key,
            api_key_file=api_key_file,
            overrides=set_,
            trust_remote_code=trust_remote_code,
            allow_base_change=allow_base_change,
            console=console,
        )


@app.command()
def studio(
    runs: Path = typer.Option(
        Path("runs"), "--runs", help="The folder of run directories (inside the workspace)."
    ),
    workspace: Path = typer.Option(
        Path("."), "--workspace", help="The one folder the studio reads and writes (default: this one)."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; anything beyond this machine needs --auth."
    ),
    port: int = typer.Option(7861, min=1, max=65535, help="Port."),
    auth: str | None = typer.Option(
        None,
        "--auth",
        help="Ask for this login: USER:PASSWORD, or a TOKEN (any user name, the token as password). It shows "
        "in `ps`: prefer $TUNEFORGE_APP_AUTH or --auth-file.",
    ),
    auth_file: Path | None = AUTH_FILE,
) -> None:
    """A web app to set up, check, launch, watch, evaluate, export and chat with fine-tunes."""
    from tuneforge.studio.app import run_studio

    with user_errors():
        run_studio(
            workspace=workspace,
            runs=runs,
            host=host,
            port=port,
            auth=auth,
            auth_file=auth_file,
            console=console,
        )
