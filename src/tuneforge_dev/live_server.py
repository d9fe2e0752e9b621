"""Waiting for a `tuneforge serve` / `tuneforge app` process to answer, for tests and bench/serve_load.py.

wait_until_up("http://127.0.0.1:8000/health", process)
"""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    """Returns once `url` answers 200; raises if the process exits first or the time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"the server exited with {process.returncode}: {said}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds:.0f} s")
