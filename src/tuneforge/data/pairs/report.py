"""What the data stage prints for preference rows: a summary table and pairs with the trained tokens
highlighted in each branch (green = trained; the prompt before them dim)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuneforge.data.encode import ChatEncoder
from tuneforge.data.prepared import PreparedData
from tuneforge.data.report import capped_at_context, rendered_sample
from tuneforge.data.tokenize import percentile


def pair_summary(data: PreparedData, requested_length: int | None) -> dict:
    stats = data.train_stats
    lengths = sorted(stats.lengths)
    return {
        "shape": data.format,
        "template": data.template_source,
        "rows": {
            "train": stats.kept,
            "read": stats.rows,
            "eval": data.eval_stats.kept if data.eval_stats else 0,
            "eval_read": data.eval_stats.rows if data.eval_stats else 0,
        },
        "max_length": {
            "requested": requested_length or "auto",
            "applied": stats.max_length,
            "capped_at_context": capped_at_context(stats, requested_length),
        },
        "tokens": {"p50": percentile(lengths, 0.5), "p99": percentile(lengths, 0.99), "max": lengths[-1]},
        "truncated": stats.truncated,
        "dropped": {
            "empty_answer": len(stats.empty),
            "answer_cut_off_by_max_length": len(stats.cut_empty),
            **({"same_tokens_in_both_branches": len(stats.identical)} if data.format == "pairs" else {}),
        },
        **({"desirable": stats.desirable} if data.format == "kto" else {}),
        "preflight": [
            {"check": r.name, "passed": r.passed, "severity": r.severity, "finding": r.message}
            for r in data.preflight
        ],
    }


def show_pair_summary(console: Console, summary: dict) -> None:
    table = Table(title=f"preference data ({summary['shape']})", show_header=False)
    table.add_row("template", summary["template"])
    rows = summary["rows"]
    table.add_row("train rows", f"{rows['train']:,} kept of {rows['read']:,}")
    table.add_row("eval rows", f"{rows['eval']:,} kept of {rows['eval_read']:,}")
    if "desirable" in summary:
        table.add_row("desirable (kto)", f"{summary['desirable']:,} of {rows['train']:,}")
    length = summary["max_length"]
    capped = ", capped at the model's context length" if length["capped_at_context"] else ""
    table.add_row("max_length", f"{length['requested']} -> {length['applied']}{capped}")
    table.add_row(
        "tokens p50 / p99 / max" + (" (longer branch)" if summary["shape"] == "pairs" else ""),
        " / ".join(str(v) for v in summary["tokens"].values()),
    )
    table.add_row("truncated", str(summary["truncated"]))
    for reason, count in summary["dropped"].items():
        table.add_row(f"dropped: {reason.replace('_', ' ')}", str(count))
    console.print(table)


def show_pairs(console: Console, data: PreparedData, tokenizer, n: int) -> None:
    encoder = ChatEncoder(tokenizer)
    names = ("chosen", "rejected") if data.format == "pairs" else ("completion",)
    for i in range(min(n, len(data.train))):
        row = data.train[i]
        for name in names:
            label = name if name != "completion" else ("desirable" if row["desirable"] else "undesirable")
            console.print(Text(f"{label}: ", style="bold"), end="")
            console.print(rendered_sample(encoder, row[f"{name}_input_ids"], row[f"{name}_labels"]))
        console.rule(style="dim")
