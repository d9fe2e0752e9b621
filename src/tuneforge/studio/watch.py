"""A run as the Runs page shows it, read from its directory only (so runs started in a terminal show up
and update too): status, step of total, an ETA, the loss / held-out / reward curves from metrics.jsonl, and
the console tail of a run the studio started.

    view = watch(Path("runs/demo"), workspace)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from tuneforge.run.directory import RunDir
from tuneforge.run.manifest import read_manifest
from tuneforge.run.metrics import read_metrics
from tuneforge.studio.workspace import Workspace

TAIL_LINES = 40
RATE_WINDOW = 10  # logged steps the ETA's speed is measured over
CURVES = {"loss": "train loss", "eval_loss": "held-out loss"}


@dataclass
class RunView:
    status: str
    step: int
    total: int | None
    eta_s: float | None
    losses: pd.DataFrame  # step, value, curve
    rewards: pd.DataFrame  # step, value, curve (preference and GRPO runs)
    console: str

    def points(self) -> str:
        """The curves' sizes under the chart: what a reader (and the browser test) sees grow."""
        counts = self.losses["curve"].value_counts()
        return ", ".join(f"{counts.get(label, 0)} {label} points" for label in CURVES.values())

    def headline(self) -> str:
        progress = f"step {self.step}" + (f" of {self.total}" if self.total else "")
        eta = f" · about {format_seconds(self.eta_s)} left" if self.eta_s is not None else ""
        return f"**{self.status}** · {progress}{eta}"


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def curves(records: list[dict], names: dict[str, str]) -> pd.DataFrame:
    rows = [
        {"step": r["step"], "value": float(r[key]), "curve": label}
        for r in records
        for key, label in names.items()
        if isinstance(r.get(key), (int, float))
    ]
    return pd.DataFrame(rows, columns=["step", "value", "curve"])


def reward_names(records: list[dict]) -> dict[str, str]:
    """GRPO's reward (and each reward function's), preference methods' margins and accuracies."""
    keys = {k for r in records for k in r if k.startswith("reward") and k != "reward_std"}
    return {k: k for k in sorted(keys)}


def eta(records: list[dict], step: int, total: int | None, since: float = 0.0) -> float | None:
    """Seconds left at the pace of the last logged steps since the (re)start at `since` (epoch seconds): the
    time a run stood stopped is no pace."""
    timed = [r for r in records if "loss" in r and r.get("time", 0) >= since]
    recent = timed[-RATE_WINDOW:]
    if not total or len(recent) < 2 or step >= total:
        return None
    first, last = recent[0], recent[-1]
    if last["step"] <= first["step"] or last["time"] <= first["time"]:
        return None
    return (total - step) * (last["time"] - first["time"]) / (last["step"] - first["step"])


def started(manifest: dict) -> float:
    """When the run last (re)started, in epoch seconds (0 when the manifest does not say)."""
    resumes = manifest.get("resumes") or []
    stamp = resumes[-1].get("at") if resumes else manifest.get("started")
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except (TypeError, ValueError):
        return 0.0


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.is_file():
        return "(started outside the studio: its console is in the terminal that started it)"
    with path.open("rb") as handle:
        handle.seek(max(0, handle.seek(0, 2) - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def watch(run_dir: Path, workspace: Workspace) -> RunView:
    run = RunDir(run_dir)
    manifest = read_manifest(run.manifest)
    records = read_metrics(run.metrics) if run.metrics.is_file() else []
    status = run.status()
    step = max([int(r.get("step", 0)) for r in records] + [int(manifest.get("global_step") or 0)])
    total = manifest.get("total_steps")
    return RunView(
        status=status,
        step=step,
        total=total,
        eta_s=eta(records, step, total, started(manifest)) if status == "running" else None,
        losses=curves(records, CURVES),
        rewards=curves(records, reward_names(records)),
        console=tail(workspace.log_for(run_dir)),
    )
