"""The CLI's own commands as child processes: the studio implements none of them again.

`tuneforge train` starts in its own session with its console in studio/logs, so closing the browser or
killing the studio never stops or corrupts a run; Stop sends it SIGINT, exactly what Ctrl-C sends (one
sealed checkpoint, status interrupted); Resume is `tuneforge train RUN/config.yaml --resume`. Eval and
export run attached and stream their console to the page.

    process = launch_training(workspace, Path("studio/demo.yaml"), Path("runs/demo"))
    stop_run(Path("runs/demo"))
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.run.directory import RunDir
from tuneforge.run.lock import LOCK_NAME, is_locked
from tuneforge.studio.workspace import Workspace

CLI = [sys.executable, "-m", "tuneforge.cli"]


def train_command(config_file: Path, run_dir: Path, resume: bool = False) -> list[str]:
    return [*CLI, "train", str(config_file), "--output-dir", str(run_dir), *(["--resume"] if resume else [])]


def launch_training(workspace: Workspace, config_file: Path, run_dir: Path, resume: bool = False) -> int:
    """Start `tuneforge train` detached from the studio; returns its pid. Refuses what the CLI would refuse
    about the folder, before starting anything."""
    RunDir(run_dir).check_target(resume=resume, overwrite=False)
    log = workspace.log_for(run_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = train_command(config_file, run_dir, resume)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ tuneforge {shlex.join(command[len(CLI) :])}\n")
        out.flush()
        process = subprocess.Popen(
            command,
            cwd=workspace.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the studio's process group: a Ctrl-C or kill of the studio spares it
        )
    threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends, while the studio lives
    return process.pid


def resume_run(workspace: Workspace, run_dir: Path) -> int:
    run = RunDir(run_dir)
    if run.status() == "finished":
        raise TuneforgeError(f"{run_dir} has finished; there is nothing to resume")
    return launch_training(workspace, run.config, run_dir, resume=True)


def stop_run(run_dir: Path) -> int:
    """SIGINT to the process training the run (started here or in a terminal): the graceful stop of Ctrl-C."""
    if not is_locked(run_dir):
        raise TuneforgeError(f"{run_dir} is not training; nothing to stop")
    try:
        holder = json.loads((run_dir / LOCK_NAME).read_text())
        if holder["host"] != socket.gethostname():  # a shared disk: that pid is another machine's
            raise TuneforgeError(f"{run_dir} trains on {holder['host']}; stop it there (Ctrl-C)")
        pid = int(holder["pid"])
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TuneforgeError(f"cannot signal the process training {run_dir}: {exc}") from None
    return pid


def stream_command(workspace: Workspace, arguments: list[str]) -> Iterator[tuple[str, int | None]]:
    """Run `tuneforge ARGUMENTS` in the workspace; yield (console so far, exit code once it ended)."""
    command = [*CLI, *arguments]
    text = f"$ tuneforge {shlex.join(arguments)}\n"
    process = subprocess.Popen(
        command,
        cwd=workspace.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in process.stdout:
            text += line
            yield text, None
        yield text, process.wait()
    finally:  # the page was closed or the event cancelled: the command goes with it
        if process.poll() is None:
            process.terminate()
            process.wait()
