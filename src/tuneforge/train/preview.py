"""`tuneforge data CONFIG`: see what training will see, without loading model weights.

Rendered samples with the trained tokens highlighted, token-length percentiles and a histogram, the
max_length chosen, truncation counts, the preflight results, and how many layers each LoRA target name
matches. It combines the data stage (tokenizer only) with the model stage's architecture on the meta device.

    tuneforge data examples/quickstart.yaml --n 3
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuneforge.config.schema import RunConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.pair_report import pair_summary, show_pair_summary, show_pairs
from tuneforge.data.prepare import PreparedData, prepare_data
from tuneforge.data.prepare_pairs import prepare_pairs
from tuneforge.data.report import histogram, length_line, rendered_sample, show_preflight
from tuneforge.data.tokenize import percentile
from tuneforge.model.load import architecture, context_length, load_tokenizer
from tuneforge.model.start import starting_adapter
from tuneforge.model.targets import resolve_targets

PERCENTILES = (0.5, 0.9, 0.95, 0.99)


def requested_length(config: RunConfig) -> int | None:
    return None if config.train.max_length == "auto" else config.train.max_length


def preview_data(config: RunConfig, hf_config=None) -> tuple[PreparedData, object]:
    """The data exactly as training would prepare it, with max_length resolved against the model's context."""
    hf_config = hf_config or architecture(config.model).config
    model = config.model
    tokenizer = load_tokenizer(model, starting_adapter(model))
    limit = context_length(hf_config)
    if config.train.method != "sft":
        return prepare_pairs(
            config.data, config.train.method, tokenizer, requested_length(config), limit
        ), tokenizer
    return prepare_data(config.data, tokenizer, requested_length(config), limit), tokenizer


def resolved_max_length(config: RunConfig) -> int:
    """train.max_length as a number; auto is resolved from the data (tokenizer only, no weights)."""
    requested = requested_length(config)
    return requested if requested is not None else preview_data(config)[0].max_length


def target_matches(config: RunConfig, hf_config) -> dict[str, int]:
    """Layers matched per LoRA target name, from the architecture alone (meta device)."""
    if config.lora.method == "full":
        return {}
    return resolve_targets(hf_config, config.lora, config.model.trust_remote_code).per_name


def data_report(config: RunConfig) -> tuple[PreparedData, dict, object]:
    if config.train.method != "sft":
        return preference_report(config)
    hf_config = architecture(config.model).config
    data, tokenizer = preview_data(config, hf_config)
    stats = data.train_stats
    lengths = sorted(stats.lengths)  # before max_length cuts them: the data's own distribution
    report = {
        "shape": data.format,
        "template": data.template_source,
        "rows": {
            "train": stats.kept,
            "eval": data.eval_stats.kept if data.eval_stats else 0,
            "eval_read": data.eval_stats.rows if data.eval_stats else 0,
            "read": stats.rows,
        },
        "max_length": {"requested": config.train.max_length, "applied": stats.max_length},
        "tokens": {f"p{int(q * 100)}": percentile(lengths, q) for q in PERCENTILES} | {"max": lengths[-1]},
        "histogram": [{"from": a, "to": b, "samples": c} for a, b, c in histogram(lengths)],
        "truncated": stats.truncated,
        "dropped": {
            "empty_answer": stats.empty_completion,
            "answer_cut_off_by_max_length": stats.no_trained_tokens,
            "longer_than_max_length": stats.dropped_long,
            "shorter_than_min_tokens": stats.dropped_short,
        },
        "preflight": [
            {"check": r.name, "passed": r.passed, "severity": r.severity, "finding": r.message}
            for r in data.preflight
        ],
        "lora_targets": target_matches(config, hf_config),
        "cache_hit": data.cache_hit,
    }
    return data, report, tokenizer


def preference_report(config: RunConfig) -> tuple[object, dict, object]:
    hf_config = architecture(config.model).config
    data, tokenizer = preview_data(config, hf_config)
    report = pair_summary(data, requested_length(config))
    return data, report | {"lora_targets": target_matches(config, hf_config)}, tokenizer


def show_report(console: Console, config: RunConfig, n: int) -> dict:
    if config.train.method != "sft":  # pairs: both branches shown, trained tokens highlighted in each
        data, report, tokenizer = preference_report(config)
        show_pairs(console, data, tokenizer, n)
        show_pair_summary(console, report)
        show_preflight(console, data.preflight)
        return report
    data, report, tokenizer = data_report(config)
    encoder = ChatEncoder(tokenizer)
    for i in range(min(n, len(data.train))):
        console.print(rendered_sample(encoder, data.train[i]["input_ids"], data.train[i]["labels"]))
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
        f"max_length: {length_line(data, requested_length(config))}\n"
        "token lengths before the cut: "
        + ", ".join(f"{k} {v}" for k, v in tokens.items())
        + f"; cut at max_length: {report['truncated']}"
        + "; dropped: "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["dropped"].items())
    )
    show_preflight(console, data.preflight)
    matches = report["lora_targets"]
    if matches:
        console.print("LoRA targets: " + ", ".join(f"{k} ({v})" for k, v in matches.items()))
    return report
