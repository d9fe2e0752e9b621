"""What the model stage prints: the parameter table and the plan."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuneforge.model.build import ModelBundle
from tuneforge.model.plan import FITS, Plan

PLAN_PARTS = ("weights", "adapter", "gradients", "optimizer", "activations", "logits", "overhead", "total")


def show_parameters(console: Console, bundle: ModelBundle, method: str) -> None:
    table = Table(title="parameters", show_header=True)
    table.add_column("trainable", justify="right")
    table.add_column("total", justify="right")
    table.add_column("%", justify="right")
    table.add_column("adapted modules (count)")
    share = 100 * bundle.trainable_params / max(bundle.total_params, 1)
    modules = (
        ", ".join(f"{name} ({n})" for name, n in bundle.adapted_modules.items())
        or f"none: {method} fine-tune"
    )
    table.add_row(f"{bundle.trainable_params:,}", f"{bundle.total_params:,}", f"{share:.2f}", modules)
    console.print(table)


def show_plan(console: Console, plan: Plan) -> None:
    where = plan.device if plan.gpus == 1 else f"each of {plan.gpus} × {plan.device} ({plan.strategy})"
    console.print(f"[bold]plan[/] for batch {plan.batch_size} x {plan.seq_len} tokens on {where}")
    table = Table()
    table.add_column("component")
    table.add_column("GiB", justify="right")
    for name in PLAN_PARTS:
        value = getattr(plan, f"{name}_gib")
        table.add_row(f"[bold]{name}[/]" if name == "total" else name, f"{value:.2f}")
    console.print(table)
    verdict = "[green]fits[/]" if plan.total_gib <= FITS * plan.device_gib else "[red]does not fit[/]"
    console.print(
        f"{verdict} in {plan.device_gib:.1f} GiB; largest batch that fits: {plan.max_batch_that_fits}\n"
        f"parameters: {plan.params_total:,} ({plan.params_trainable:,} trainable)\n"
        f"estimated {plan.tokens_per_second:,.0f} tokens/s"
        + (f" on all {plan.gpus} (90% scaling assumed)" if plan.gpus > 1 else "")
        + (f", at most {plan.run_hours:.2f} h for max_steps" if plan.run_hours else "")
    )
    if plan.rollout_tokens_per_step:
        console.print(
            f"rollouts: up to {plan.rollout_tokens_per_step:,} generated tokens per batch of rollouts per device; KV "
            f"cache {plan.rollout_cache_gib:.2f} GiB (generation and training take turns: total is the larger)"
        )
