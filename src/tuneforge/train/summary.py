"""The table a run ends with: held-out loss before and after training (and for preference runs the held-out
rewards and log-probs; for GRPO the held-out rewards of greedy answers)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def show_before_after(console: Console, before: dict | None, after: dict | None) -> None:
    if not (before and after):
        return
    if "eval_loss" in before and "eval_loss" in after:  # GRPO has rewards instead
        table = Table(title="held-out loss")
        for column in ("before", "after", "change"):
            table.add_column(column, justify="right")
        b, a = before["eval_loss"], after["eval_loss"]
        table.add_row(f"{b:.4f}", f"{a:.4f}", f"{100 * (a - b) / b:+.1f}%")
        console.print(table)
    rewards = sorted(
        key for key in before.keys() & after.keys() if key.startswith(("eval_reward", "eval_rewards/"))
    )
    rows = [key for key in PREFERENCE_SUMMARY if key in before and key in after] + rewards
    if rows:
        table = Table(title="held-out metrics")
        for column in ("metric", "before", "after"):
            table.add_column(column, justify="right")
        for key in rows:
            table.add_row(key.removeprefix("eval_"), f"{before[key]:.4f}", f"{after[key]:.4f}")
        console.print(table)


PREFERENCE_SUMMARY = (
    "eval_rewards/accuracies",
    "eval_rewards/margins",
    "eval_rewards/chosen",
    "eval_rewards/rejected",
    "eval_logps/chosen",
    "eval_logps/rejected",
)
