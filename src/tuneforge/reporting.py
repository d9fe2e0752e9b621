"""What a run prints: parameter table, data summary with one rendered sample, before/after metrics."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuneforge.data import PreparedData
from tuneforge.modeling import ModelBundle
from tuneforge.tokenization import IGNORE


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


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, math.floor(q * len(sorted_values)))]


def show_data(console: Console, data: PreparedData, tokenizer, max_length: int) -> None:
    lengths = sorted(data.train["length"])
    stats = data.train_stats
    table = Table(title="data", show_header=False)
    table.add_row("shape", data.format)
    table.add_row("template", data.template_source)
    table.add_row(
        "tokenization", "reused from cache" if data.cache_hit else "tokenized now (cached for reuse)"
    )
    table.add_row("train rows", f"{stats.kept:,} kept of {stats.rows:,}")
    table.add_row("eval rows", f"{data.eval_stats.kept:,}" if data.eval_stats else "none")
    table.add_row(
        "tokens p50 / p95 / max", f"{percentile(lengths, 0.5)} / {percentile(lengths, 0.95)} / {lengths[-1]}"
    )
    table.add_row("dropped: empty completion", str(stats.empty_completion))
    table.add_row(f"truncated to {max_length}", str(stats.truncated))
    table.add_row("dropped: nothing left to train", str(stats.no_trained_tokens))
    table.add_row(
        "dropped: length filters", f"{stats.dropped_long} too long, {stats.dropped_short} too short"
    )
    console.print(table)
    console.print(rendered_sample(tokenizer, data.train[0]["input_ids"], data.train[0]["labels"]))


def rendered_sample(tokenizer, input_ids: list[int], labels: list[int]) -> Text:
    """One training sample as text; trained tokens in green, masked ones dim.

    Decodes whole prefixes and takes the difference at each trained/masked boundary: decoding tokens one
    by one drops SentencePiece's leading-space markers."""
    text = Text("sample (green = trained): ", style="bold")
    decoded, start = "", 0
    for end in range(1, len(input_ids) + 1):
        if end == len(input_ids) or (labels[end] != IGNORE) != (labels[start] != IGNORE):
            upto = tokenizer.decode(input_ids[:end])
            text.append(upto[len(decoded) :], style="green" if labels[start] != IGNORE else "dim")
            decoded, start = upto, end
    return text


def show_before_after(console: Console, before: dict | None, after: dict | None) -> None:
    if not (before and after):
        return
    table = Table(title="held-out loss")
    for column in ("before", "after", "change"):
        table.add_column(column, justify="right")
    b, a = before["eval_loss"], after["eval_loss"]
    table.add_row(f"{b:.4f}", f"{a:.4f}", f"{100 * (a - b) / b:+.1f}%")
    console.print(table)


def show_plan(console: Console, plan) -> None:
    console.print(f"[bold]plan[/] for batch {plan.batch_size} x {plan.seq_len} tokens on {plan.device}")
    table = Table()
    table.add_column("component")
    table.add_column("GiB", justify="right")
    for name in (
        "weights",
        "adapter",
        "gradients",
        "optimizer",
        "activations",
        "logits",
        "overhead",
        "total",
    ):
        value = getattr(plan, f"{name}_gib")
        table.add_row(f"[bold]{name}[/]" if name == "total" else name, f"{value:.2f}")
    console.print(table)
    verdict = "[green]fits[/]" if plan.total_gib <= 0.92 * plan.device_gib else "[red]does not fit[/]"
    console.print(
        f"{verdict} in {plan.device_gib:.1f} GiB; largest batch that fits: {plan.max_batch_that_fits}\n"
        f"parameters: {plan.params_total:,} ({plan.params_trainable:,} trainable)\n"
        f"estimated {plan.tokens_per_second:,.0f} tokens/s"
        + (f", at most {plan.run_hours:.2f} h for max_steps" if plan.run_hours else "")
    )


def show_preflight(console: Console, results) -> None:
    table = Table(title="preflight", show_header=True)
    table.add_column("check")
    table.add_column("result")
    table.add_column("finding")
    for r in results:
        verdict = (
            "[green]pass[/]" if r.passed else ("[red]FAIL[/]" if r.severity == "error" else "[yellow]warn[/]")
        )
        table.add_row(r.name, verdict, r.message)
    console.print(table)
