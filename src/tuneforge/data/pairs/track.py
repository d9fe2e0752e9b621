"""The pairs track: preference pairs (prompt, chosen, rejected) or KTO rows (prompt, completion, label),
over the shared data core (sources, data.mix, templates, the one encoder, the tokenization cache).

read each row as a prompt plus answers (`pairs/rows.py`) -> encode every answer as its whole conversation
through the one encoder and check each pair (`pairs/encode.py`) -> preflight (`pairs/preflight.py`)

    data = prepare_data(config.data, tokenizer, max_length=None, context_length=2048, track=PAIRS)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.pairs.encode import PairStats, encode_preferences
from tuneforge.data.pairs.preflight import run_pair_preflight
from tuneforge.data.pairs.rows import PreferenceItem, check_preference_columns, preference_item
from tuneforge.data.preflight import CheckResult
from tuneforge.data.sources import RawData
from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class PairsTrack:
    """`shape` is pairs (two answers, a chosen and a rejected one) or kto (one answer and its label)."""

    kind: str = "pairs"
    stats_type: type = PairStats

    @property
    def name(self) -> str:
        return self.kind

    def shape(self, columns: list[str], data: DataConfig, source: str) -> str:
        check_preference_columns(columns, self.kind, data, source=source)
        return self.kind

    def mix_rows(self, rows: Dataset, shape: str, data: DataConfig, source: str) -> tuple[str, list[dict]]:
        """Each row as {prompt: messages (system prompt included), chosen, rejected} or {prompt,
        completion, label}: the column names the mixed rows are read back with."""
        items = read_items(rows, list(range(len(rows))), self.kind, data, source)
        if self.kind == "kto":
            return shape, [
                {"prompt": i.prompt, "completion": i.answers[0], "label": i.desirable} for i in items
            ]
        return shape, [{"prompt": i.prompt, "chosen": i.answers[0], "rejected": i.answers[1]} for i in items]

    def encode(
        self,
        raw: RawData,
        shape: str,
        data: DataConfig,
        encoder: ChatEncoder,
        max_length: int | None,
        context_length: int | None,
    ):
        train_items = read_items(raw.train, raw.numbers("train"), shape, data, data.path)
        train, train_stats = encode_preferences(
            train_items,
            encoder,
            max_length=max_length,
            context_length=context_length,
            source=data.path,
            numbers=raw.numbers("train"),
        )
        if raw.eval is None:
            return train, None, train_stats, None
        eval_source = (
            data.eval_path or data.path
        )  # rows split off the training file are named by their place in it
        # cut where the training rows are cut, so held-out rewards measure the same task
        eval_set, eval_stats = encode_preferences(
            read_items(raw.eval, raw.numbers("eval"), shape, data, eval_source),
            encoder,
            max_length=train_stats.max_length,
            context_length=context_length,
            source=eval_source,
            numbers=raw.numbers("eval"),
        )
        return train, eval_set, train_stats, eval_stats

    def preflight(
        self, data: DataConfig, tokenizer: PreTrainedTokenizerBase, encoded, shape: str
    ) -> list[CheckResult]:
        _, _, train_stats, eval_stats = encoded
        pairs = shape == "pairs"
        checks = run_pair_preflight(data.preflight, train_stats, pairs=pairs)
        if (
            eval_stats is not None
        ):  # held-out rows are scored with the same prompts: the same checks, findings only
            held_out = run_pair_preflight(data.preflight, eval_stats, pairs=pairs)
            checks += [replace(r, name=f"{r.name} (eval)") for r in held_out if not r.passed]
        for where, stats in ((data.path, train_stats), ("the eval split", eval_stats)):
            if stats is not None and stats.kept == 0:
                findings = "; ".join(
                    c.message for c in run_pair_preflight(data.preflight, stats, pairs) if not c.passed
                )
                raise TuneforgeError(f"{where}: no row is left to train on: {findings}")
        return checks

    def eval_items(self, raw: RawData, shape: str, data: DataConfig) -> list:
        """Held-out prompts with the chosen (desirable) answer."""
        if raw.eval is None:
            return []
        items = read_items(raw.eval, raw.numbers("eval"), shape, data, data.eval_path or data.path)
        return [item.conversation() for item in items if item.desirable in (None, True)]


def read_items(
    rows: Dataset, numbers: list[int], shape: str, data: DataConfig, source: str
) -> list[PreferenceItem]:
    return [preference_item(row, shape, data, f"{source} row {n}") for n, row in zip(numbers, rows)]


PAIRS = PairsTrack("pairs")
KTO = PairsTrack("kto")
