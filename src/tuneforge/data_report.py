"""`tuneforge data CONFIG`: see what training will see, without loading model weights.

Rendered samples with the trained tokens highlighted, token-length percentiles and a histogram,
truncation counts, the preflight results, and how many layers each LoRA target name matches.

    tuneforge data examples/quickstart.yaml --n 3
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuneforge.config import RunConfig
from tuneforge.data import PreparedData, prepare_data
from tuneforge.modeling import linear_module_names, load_tokenizer
from tuneforge.plan import meta_model
from tuneforge.reporting import percentile, rendered_sample, show_preflight

PERCENTILES = (0.5, 0.9, 0.95, 0.99)


def target_matches(config: RunConfig) -> dict[str, int]:
    """Layers matched per LoRA target name, from the architecture alone (meta device)."""
    if config.lora.method == "full":
        return {}
    names = linear_module_names(meta_model(config))
    if config.lora.target_modules == "all-linear":
        return {name: count for name, count in sorted(names.items()) if name != "lm_head"}
    return {name: names.get(name, 0) for name in config.lora.target_modules}


def histogram(lengths: list[int], bins: int = 10) -> list[tuple[int, int, int]]:
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // bins))
    counts = [0] * bins
    for n in lengths:
        counts[min((n - low) // width, bins - 1)] += 1
    return [(low + i * width, low + (i + 1) * width - 1, c) for i, c in enumerate(counts)]


def data_report(config: RunConfig) -> tuple[PreparedData, dict, object]:
    tokenizer = load_tokenizer(config.model)
    data = prepare_data(config.data, tokenizer, config.train.max_length)
    lengths = sorted(data.train["length"])
    stats = data.train_stats
    report = {
        "shape": data.format,
        "template": data.template_source,
        "rows": {
            "train": stats.kept,
            "eval": data.eval_stats.kept if data.eval_stats else 0,
            "read": stats.rows,
        },
        "tokens": {f"p{int(q * 100)}": percentile(lengths, q) for q in PERCENTILES} | {"max": lengths[-1]},
        "histogram": [{"from": a, "to": b, "samples": c} for a, b, c in histogram(lengths)],
        "truncated": stats.truncated,
        "dropped": {
            "empty_answer": stats.empty_completion,
            "nothing_left_to_train": stats.no_trained_tokens,
            "longer_than_max_length": stats.dropped_long,
            "shorter_than_min_tokens": stats.dropped_short,
        },
        "preflight": [
            {"check": r.name, "passed": r.passed, "severity": r.severity, "finding": r.message}
            for r in data.preflight
        ],
        "lora_targets": target_matches(config),
        "cache_hit": data.cache_hit,
    }
    return data, report, tokenizer


def show_report(console: Console, config: RunConfig, n: int) -> dict:
    data, report, tokenizer = data_report(config)
    for i in range(min(n, len(data.train))):
        console.print(rendered_sample(tokenizer, data.train[i]["input_ids"], data.train[i]["labels"]))
        console.rule(style="dim")
    table = Table(
        title=f"{report['rows']['train']:,} training samples ({report['shape']}, {report['template']})"
    )
    table.add_column("tokens", justify="right")
    table.add_column("samples", justify="right")
    table.add_column("")
    peak = max(b["samples"] for b in report["histogram"]) or 1
    for b in report["histogram"]:
        table.add_row(f"{b['from']}-{b['to']}", str(b["samples"]), "█" * round(30 * b["samples"] / peak))
    console.print(table)
    tokens = report["tokens"]
    console.print(
        "token lengths: "
        + ", ".join(f"{k} {v}" for k, v in tokens.items())
        + f"; cut at max_length={config.train.max_length}: {report['truncated']}"
        + "; dropped: "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["dropped"].items())
    )
    show_preflight(console, data.preflight)
    matches = report["lora_targets"]
    if matches:
        console.print(
            "LoRA targets: "
            + ", ".join(
                f"{k} ({v})" if v else f"[red]{k} (0: matches nothing)[/]" for k, v in matches.items()
            )
        )
    return report
