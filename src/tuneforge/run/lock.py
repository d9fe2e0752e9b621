"""One process at a time per run directory: an exclusive `flock` on RUN_DIR/.lock.

The kernel releases the lock when its process ends, however it ends, so a lock left by a killed process
is never in the way, whatever its pid or host. The file's JSON (pid, host, start time) only names the
holder in the message a second process gets. A second `tuneforge train` into the same folder, or a
`--resume` while the first still trains, is refused.

    with RunLock(Path("runs/quickstart")) as lock:
        ...            # lock.created_dir: the folder did not exist before
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from tuneforge.errors import TuneforgeError

LOCK_NAME = ".lock"


def holder(path: Path) -> str:
    try:
        found = json.loads(path.read_text())
        return f"pid {found['pid']} on {found['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def is_locked(root: Path) -> bool:
    """True while some process holds the run directory's lock."""
    path = root / LOCK_NAME
    if not path.is_file():
        return False
    with path.open() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class RunLock:
    def __init__(self, root: Path, notice=print):
        self.root = root
        self.path = root / LOCK_NAME
        self.notice = notice
        self.created_dir = False
        self.handle = None

    def __enter__(self) -> RunLock:
        self.created_dir = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            handle = self.path.open("a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise TuneforgeError(
                    f"{self.root} is in use by another tuneforge process ({holder(self.path)}). Wait for it to "
                    "finish, stop it, or train into another --output-dir."
                ) from None
            # Locked the file we opened; if another process replaced the path meanwhile, lock the new one.
            if self.path.exists() and os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        handle.flush()
        self.handle = handle
        return self

    def release(self, remove_dir: bool = False) -> None:
        if self.handle is None:
            return
        if remove_dir:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)  # while still held: nobody can have locked a newer file
        self.handle.close()
        self.handle = None

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()
