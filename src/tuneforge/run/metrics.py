"""metrics.jsonl: one JSON object per logged event (train loss, eval loss, learning rate) with its step.

The one place the file is appended to, read, and trimmed when a run resumes from a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path


def append_metrics(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """Every complete line; one cut off by a kill mid-append is left out."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def keep_metrics_up_to(path: Path, step: int) -> None:
    """On resume, drop the lines logged after the checkpoint: those steps are trained again."""
    kept = [record for record in read_metrics(path) if record.get("step", 0) <= step]
    if path.is_file():
        path.write_text("".join(json.dumps(record) + "\n" for record in kept))
