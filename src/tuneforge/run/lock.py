"""One process at a time per run directory: RUN_DIR/.lock holds the owner's pid and host.

A second `tuneforge train` into the same folder (or a `--resume` while the first still trains) is refused.
A lock whose process is gone (killed, machine rebooted) is stale: it is replaced, and the user is told.

    with RunLock(Path("runs/quickstart")) as lock:
        ...            # lock.created_dir: the folder did not exist before
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from tuneforge.errors import TuneforgeError

LOCK_NAME = ".lock"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    def __init__(self, root: Path, notice=print):
        self.root = root
        self.path = root / LOCK_NAME
        self.notice = notice
        self.created_dir = False

    def __enter__(self) -> RunLock:
        self.created_dir = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self.refuse_or_clear_stale()
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(owner, handle)
            return self

    def refuse_or_clear_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, host = -1, socket.gethostname()  # half-written by a process killed while locking
        if host != socket.gethostname():
            raise TuneforgeError(
                f"{self.root} is locked by process {pid} on host {host}. If no run is going on there, delete "
                f"{self.path} and try again."
            )
        if pid > 0 and process_alive(pid):
            raise TuneforgeError(
                f"{self.root} is in use by another tuneforge process (pid {pid}). Wait for it to finish, stop "
                "it, or train into another --output-dir."
            )
        self.notice(f"removing a stale lock left by process {pid}, which is no longer running")
        self.path.unlink(missing_ok=True)

    def release(self, remove_dir: bool = False) -> None:
        if remove_dir:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()
