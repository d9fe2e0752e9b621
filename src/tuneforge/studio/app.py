"""`tuneforge studio`: the Blocks (a run picker above the pages) and the launch, safe by default: it binds
127.0.0.1; another interface needs a login (`--auth USER:PASSWORD` or `--auth TOKEN`, `--auth-file`,
$TUNEFORGE_APP_AUTH) and is refused without one; no share link; every path stays inside the workspace, which becomes the
working directory (so the configs' relative paths mean the same to the studio and its child processes).

    tuneforge studio --runs runs --port 7861
"""

from __future__ import annotations

import errno
import hmac
import os
from collections.abc import Callable
from pathlib import Path

import gradio as gr
from rich.console import Console

from tuneforge.errors import TuneforgeError
from tuneforge.serve.access import (
    APP_AUTH_ENV,
    check_exposure,
    check_port,
    port_problem,
    reach,
    read_app_logins,
)
from tuneforge.studio.chat_page import ChatPage
from tuneforge.studio.new_run import NewRunPage
from tuneforge.studio.results import ResultPages
from tuneforge.studio.runs_page import RunsPage
from tuneforge.studio.workspace import Workspace

RUN_LIST_REFRESH_S = 5.0
# Consoles hold the CLI's tables: they line up only in a monospace font.
CSS = "#console textarea, #eval-console textarea, #export-console textarea {font-family: ui-monospace, monospace}"


def build_studio(workspace: Workspace) -> gr.Blocks:
    results = ResultPages(workspace)
    with gr.Blocks(title="tuneforge studio") as studio:
        gr.Markdown(
            f"## tuneforge studio · workspace `{workspace.root}` · runs in `{workspace.relative(workspace.runs)}`"
        )
        runs = workspace.run_dirs()
        run_choice = gr.Dropdown(
            runs, value=runs[0] if runs else None, label="Run", allow_custom_value=True, elem_id="run-choice"
        )
        with gr.Tabs() as tabs:
            with gr.Tab("New run", id="new"):
                NewRunPage(workspace).build(run_choice, tabs)
            with gr.Tab("Runs", id="runs"):
                RunsPage(workspace).build(run_choice)
            with gr.Tab("Evaluate", id="evaluate"):
                results.build_evaluate(run_choice)
            with gr.Tab("Export", id="export"):
                results.build_export(run_choice)
            with gr.Tab("Chat", id="chat"):
                ChatPage(workspace).build()
            with gr.Tab("Compare", id="compare"):
                pickers = [run_choice, *results.build_compare(runs)]

        known = gr.State(runs)  # per browser tab: the list its picker shows

        def refresh_choices(shown: list[str], *current: str | None):
            # the runs a terminal started appear too; an unchanged list leaves the pickers alone
            found = workspace.run_dirs()
            if found == shown:
                return [gr.skip()] * (len(pickers) + 1)
            return [found, *(gr.Dropdown(choices=found, value=value) for value in current)]

        timer = gr.Timer(RUN_LIST_REFRESH_S)
        timer.tick(refresh_choices, [known, *pickers], [known, *pickers], show_progress="hidden")

    return studio


def studio_logins(auth: str | None, auth_file: Path | None) -> list[tuple[str, str]] | Callable | None:
    """Logins as `tuneforge app` takes them (USER:PASSWORD from --auth, --auth-file or $TUNEFORGE_APP_AUTH),
    or a bare token (no colon): then any user name, and the token as the password."""
    given = (
        auth if auth is not None else (os.environ.get(APP_AUTH_ENV) or None if auth_file is None else None)
    )
    if auth is not None and auth_file is not None:
        raise TuneforgeError("give --auth or --auth-file, not both")
    if given is not None and not given.strip():
        raise TuneforgeError("--auth is empty; give USER:PASSWORD or a token")
    if given and ":" not in given:
        token = given.strip().encode()
        return lambda user, password: hmac.compare_digest(password.encode(), token)
    return read_app_logins(auth, auth_file) or None


def run_studio(
    *,
    workspace: Path,
    runs: Path,
    host: str,
    port: int,
    auth: str | None,
    auth_file: Path | None,
    console: Console,
) -> None:
    """Until it is stopped. Runs it started go on after it stops."""
    logins = studio_logins(auth, auth_file)
    check_exposure(
        host,
        bool(logins),
        f"pass --auth USER:PASSWORD or --auth TOKEN (or --auth-file PATH, or set ${APP_AUTH_ENV})",
    )
    check_port(host, port)
    space = Workspace.open(workspace, runs)
    os.chdir(space.root)
    login = "login required" if logins else "no login"
    console.print(
        f"studio on http://{host}:{port} ({reach(host)}, {login}) · workspace {space.root}", highlight=False
    )
    try:
        build_studio(space).queue(default_concurrency_limit=4).launch(
            server_name=host,
            server_port=port,
            auth=logins,
            share=False,  # said outright: GRADIO_SHARE=True in the environment would open a public link
            quiet=True,
            allowed_paths=[str(space.root)],
            css=CSS,
        )
    except OSError as exc:
        raise TuneforgeError(port_problem(host, port, exc.errno or errno.EADDRINUSE)) from None
