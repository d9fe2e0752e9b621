"""What `tuneforge data` and the start of a GRPO run show: the prompts as the model sees them, their
lengths, the reference columns, and what each reward gives the reference answer itself (a reward that
the reference cannot earn is a warning: the column or the pattern is probably wrong)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from tuneforge.config.schema import RunConfig
from tuneforge.data.preflight import CheckResult
from tuneforge.data.prepared import PreparedData
from tuneforge.data.prompts import REFERENCE
from tuneforge.train.rewards import Reward, score_completions

CHECKED_ROWS = 200  # enough to see a reward that cannot be earned, quick for any reward function


def reward_check(rewards: list[Reward], data: PreparedData) -> CheckResult:
    """Each reward on the rows' reference answers themselves, for the rows that have one."""
    sample = data.train.select(range(min(CHECKED_ROWS, len(data.train))))
    rows = [json.loads(row) for row in sample["row"]]
    chosen = [i for i, row in enumerate(rows) if REFERENCE in row]
    if not chosen:
        return CheckResult("reward_reachable", True, "warn", "no reference answers to try the rewards on")
    prompts = [sample[i]["prompt"] for i in chosen]
    answers = [str(rows[i][REFERENCE]) for i in chosen]
    scores = score_completions(rewards, prompts, answers, [rows[i] for i in chosen])
    short = []
    for reward in rewards:
        values = scores.per_reward[reward.name]
        mean = sum(values) / len(values)
        if reward.maximum is not None and mean < reward.maximum - 1e-9:
            short.append(
                f"{reward.name} gives the reference answers {mean:.3g} on average (best {reward.maximum:g})"
            )
    if short:
        finding = "; ".join(short) + ": can it be earned? Check its column or pattern"
        return CheckResult("reward_reachable", False, "warn", finding)
    means = ", ".join(f"{r.name} {sum(scores.per_reward[r.name]) / len(chosen):.3g}" for r in rewards)
    return CheckResult("reward_reachable", True, "warn", f"the reference answers score: {means}")


def summary(config: RunConfig, data: PreparedData) -> dict:
    stats = data.train_stats
    lengths = sorted(stats.lengths)
    return {
        "shape": data.format,
        "method": "grpo",
        "train_rows": stats.kept,
        "eval_rows": data.eval_stats.kept if data.eval_stats else 0,
        "with_reference": stats.with_reference,
        "dropped_long": stats.dropped_long,
        "max_prompt_tokens": stats.max_length,
        "prompt_tokens_p50": lengths[len(lengths) // 2] if lengths else 0,
        "group_size": config.grpo.group_size,
        "rollouts_per_step": config.grpo.group_size * config.grpo.prompts_per_step,
        "max_completion_tokens": config.grpo.max_completion_tokens,
        "rewards": [f"{r.label} x{r.weight:g}" for r in config.grpo.rewards],
    }


def show_prompts(console: Console, data: PreparedData, tokenizer, report: dict, n: int) -> None:
    table = Table(title=f"GRPO prompts ({report['shape']})", show_header=False)
    for key, value in report.items():
        if key not in ("shape", "preflight", "lora_targets"):
            table.add_row(key.replace("_", " "), ", ".join(value) if isinstance(value, list) else str(value))
    console.print(table)
    for index in range(min(n, len(data.train))):
        row = data.train[index]
        console.print("[bold]prompt, as the model sees it:[/]")
        console.print(repr(tokenizer.decode(row["prompt_ids"])), highlight=False, markup=False)
        console.print(f"[bold]row:[/] {row['row']}", highlight=False)
