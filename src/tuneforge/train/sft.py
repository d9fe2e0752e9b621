"""The supervised fine-tuning recipe (train.method: sft): answers (or whole documents) as labels.

model -> samples through the one encoder (the data stage's samples track), checked by preflight -> the
transformers Trainer with padding or packing, the selective loss and, optionally, generation metrics at
every evaluation. `train/run.py` runs it like every other method.

    tuneforge train examples/quickstart.yaml
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuneforge.config.schema import RunConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.preflight import enforce
from tuneforge.data.prepare import prepare_data
from tuneforge.data.prepared import PreparedData
from tuneforge.data.report import (
    capped_at_context,
    histogram,
    length_line,
    rendered_sample,
    show_data,
    show_preflight,
)
from tuneforge.data.samples import SAMPLES
from tuneforge.data.tokenize import percentile
from tuneforge.eval.scoring import GenerationScorer
from tuneforge.infer.decoding import Decoding
from tuneforge.model.build import ModelBundle
from tuneforge.model.load import context_length
from tuneforge.train.builders import (
    load_model,
    preflight_json,
    prepare_per_machine,
    requested_length,
    run_arguments,
    run_callbacks,
    selective_allowed,
    target_matches,
)
from tuneforge.train.recipe import Recipe
from tuneforge.train.trainer import build_trainer, use_packing

PERCENTILES = (0.5, 0.9, 0.95, 0.99)


class SFTRecipe(Recipe):
    name = "sft"

    def prepare_data(self, config, tokenizer, max_length, context_length) -> PreparedData:
        return prepare_data(config.data, tokenizer, max_length, context_length, track=SAMPLES)

    def prepare(self, config: RunConfig, console: Console) -> tuple[ModelBundle, PreparedData]:
        bundle = load_model(config, console)
        limit = context_length(bundle.model.config)
        data = prepare_per_machine(
            config,
            bundle,
            lambda: self.prepare_data(config, bundle.tokenizer, requested_length(config), limit),
        )
        show_data(console, data, bundle.tokenizer, requested_length(config))
        show_preflight(console, data.preflight)
        enforce(data.preflight)
        return bundle, data

    def assemble(self, config, bundle, data, run, callbacks, console, resuming):
        return build_trainer(
            bundle.model,
            run_arguments(config, bundle, data, run, resuming),
            train_set=data.train,
            eval_set=data.eval,
            pad_token_id=bundle.tokenizer.pad_token_id,
            callbacks=[*run_callbacks(config, run, console), *callbacks],
            packing=use_packing(config.train),
            scorer=training_scorer(config, bundle, data),
            selective=selective_allowed(config),
        )

    def manifest_fields(self, config: RunConfig, data: PreparedData) -> dict:
        return {"data_format": data.format}  # inference reads input files in the row shape training detected

    def data_report(self, config: RunConfig, data: PreparedData, hf_config) -> dict:
        stats = data.train_stats
        lengths = sorted(stats.lengths)  # before max_length cuts them: the data's own distribution
        return {
            "shape": data.format,
            "template": data.template_source,
            "rows": {
                "train": stats.kept,
                "eval": data.eval_stats.kept if data.eval_stats else 0,
                "eval_read": data.eval_stats.rows if data.eval_stats else 0,
                "read": stats.rows,
            },
            "max_length": {
                "requested": config.train.max_length,
                "applied": stats.max_length,
                "capped_at_context": capped_at_context(stats, requested_length(config)),
            },
            "tokens": {f"p{int(q * 100)}": percentile(lengths, q) for q in PERCENTILES}
            | {"max": lengths[-1]},
            "histogram": [{"from": a, "to": b, "samples": c} for a, b, c in histogram(lengths)],
            "truncated": stats.truncated,
            "dropped": {
                "empty_answer": stats.empty_completion,
                "answer_cut_off_by_max_length": stats.no_trained_tokens,
                "longer_than_max_length": stats.dropped_long,
                "shorter_than_min_tokens": stats.dropped_short,
            },
            "preflight": preflight_json(data),
            "lora_targets": target_matches(config, hf_config),
            "cache_hit": data.cache_hit,
        }

    def show_data(self, console, data, tokenizer, report, n) -> None:
        encoder = ChatEncoder(tokenizer)
        for i in range(min(n, len(data.train))):
            console.print(rendered_sample(encoder, data.train[i]["input_ids"], data.train[i]["labels"]))
            console.rule(style="dim")
        table = Table(title=f"{samples_line(report)} ({report['shape']}, {report['template']})")
        table.add_column("tokens", justify="right")
        table.add_column("samples", justify="right")
        table.add_column("")
        peak = max(b["samples"] for b in report["histogram"]) or 1
        for b in report["histogram"]:
            table.add_row(f"{b['from']}-{b['to']}", str(b["samples"]), "█" * round(30 * b["samples"] / peak))
        console.print(table)
        requested = report["max_length"]["requested"]
        console.print(
            f"max_length: {length_line(data, None if requested == 'auto' else requested)}\n"
            "token lengths before the cut: "
            + ", ".join(f"{k} {v}" for k, v in report["tokens"].items())
            + f"; cut at max_length: {report['truncated']}"
            + "; dropped: "
            + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["dropped"].items())
        )
        show_preflight(console, data.preflight)


def samples_line(report: dict) -> str:
    """The training samples, and the rows read when some were left out and why: the histogram and the
    preflight findings count rows or samples before the cut, and unlabelled they look like a miscount."""
    rows = report["rows"]
    line = f"{rows['train']:,} training samples"
    if rows["train"] == rows["read"]:
        return line
    left_out = ", ".join(f"{n:,} {why.replace('_', ' ')}" for why, n in report["dropped"].items() if n)
    return f"{line} of {rows['read']:,} rows read (left out: {left_out})"


def training_scorer(config: RunConfig, bundle: ModelBundle, data: PreparedData):
    """Generation metrics at every evaluation, on a fixed sample of held-out rows (eval.during_training)."""
    settings = config.eval
    conversations = [item for item in data.eval_items if isinstance(item, list)][: settings.sample_size]
    if not settings.during_training or not conversations:
        return None
    decoding = Decoding(max_new_tokens=settings.max_new_tokens)
    metrics = None if settings.metrics == "auto" else list(settings.metrics)
    return GenerationScorer(
        bundle.tokenizer, conversations, metrics, decoding, batch_size=settings.batch_size
    )


SFT = SFTRecipe()
