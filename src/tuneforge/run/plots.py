"""plots/loss.png from metrics.jsonl: training loss and held-out loss against the optimizer step; for
preference runs also plots/rewards.png (reward margins and accuracy)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from tuneforge.run.metrics import read_metrics  # noqa: E402


def plot_loss(metrics_path: Path, out_path: Path, title: str) -> Path:
    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    held_out = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if held_out:
        ax.plot(*zip(*held_out), "o-", label="eval loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def plot_rewards(metrics_path: Path, out_path: Path, title: str) -> Path | None:
    """Preference runs: chosen and rejected rewards, and reward accuracy (kto: the reference point z),
    train and held-out, against the optimizer step. None for a run that logged no rewards (sft)."""
    records = read_metrics(metrics_path)
    if not any("rewards/chosen" in r or "eval_rewards/chosen" in r for r in records):
        return None
    right = "rewards/accuracies" if any("rewards/accuracies" in r for r in records) else "kl"
    fig, (rewards, other) = plt.subplots(1, 2, figsize=(11, 4))
    for prefix, style in (("", "-"), ("eval_", "o-")):
        for ax, key in ((rewards, "rewards/chosen"), (rewards, "rewards/rejected"), (other, right)):
            points = [(r["step"], r[prefix + key]) for r in records if prefix + key in r]
            if points:
                ax.plot(*zip(*points), style, label=prefix + key)
    rewards.set_ylabel("reward: beta x log-prob ratio (simpo, orpo: x mean log-prob)")
    other.set_ylabel("chosen reward > rejected reward" if right != "kl" else "reference point z")
    for ax in (rewards, other):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
