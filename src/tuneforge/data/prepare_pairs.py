"""Data stage for preference tuning: config section `data` -> encoded pairs (or KTO rows), checked.

load rows (as for SFT: files, saved folders, hub ids, eval split) -> check columns -> install the prompt
template -> read each row as a prompt plus answers (data/pairs.py) -> encode both branches through the one
encoder and check each pair (data/pair_encode.py) -> preflight (data/pair_preflight.py)

    data = prepare_pairs(config.data, "dpo", tokenizer, max_length=None, context_length=2048)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.pair_encode import PairStats, encode_preferences
from tuneforge.data.pair_preflight import run_pair_preflight
from tuneforge.data.pairs import PreferenceItem, check_preference_columns, preference_item, preference_shape
from tuneforge.data.preflight import CheckResult
from tuneforge.data.sources import load_data_rows, sha256
from tuneforge.data.templates import install_chat_template
from tuneforge.errors import TuneforgeError


@dataclass
class PreparedPairs:
    """What a preference run trains on; the fields a run directory records are named as PreparedData's."""

    train: Dataset
    eval: Dataset | None
    train_stats: PairStats
    eval_stats: PairStats | None
    format: str  # pairs or kto
    template_source: str
    file_hashes: dict[Path, str]
    preflight: list[CheckResult] = field(default_factory=list)
    eval_items: list = field(default_factory=list)  # held-out prompts with the chosen (desirable) answer
    reference: dict | None = None  # per split, the reference log-probs of each row's answers (dpo, kto)

    @property
    def max_length(self) -> int:
        return self.train_stats.max_length


def prepare_pairs(
    data: DataConfig,
    method: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None,
    context_length: int | None = None,
) -> PreparedPairs:
    shape = preference_shape(method)
    raw = load_data_rows(data)
    check_preference_columns(raw.train.column_names, shape, data, source=data.path)
    if raw.eval is not None and data.eval_path:
        check_preference_columns(raw.eval.column_names, shape, data, source=data.eval_path)
    template_source = install_chat_template(tokenizer, data.template)
    encoder = ChatEncoder(tokenizer)
    train_items = read_items(raw.train, raw.numbers("train"), shape, data, data.path)
    train, train_stats = encode_preferences(
        train_items,
        encoder,
        max_length=max_length,
        context_length=context_length,
        source=data.path,
        numbers=raw.numbers("train"),
    )
    eval_set = eval_stats = None
    eval_items: list[PreferenceItem] = []
    if raw.eval is not None:
        # rows split off the training file are named by their place in it
        eval_source = data.eval_path or data.path
        eval_items = read_items(raw.eval, raw.numbers("eval"), shape, data, eval_source)
        # cut where the training rows are cut, so held-out rewards measure the same task
        eval_set, eval_stats = encode_preferences(
            eval_items,
            encoder,
            max_length=train_stats.max_length,
            context_length=context_length,
            source=eval_source,
            numbers=raw.numbers("eval"),
        )
    checks = run_pair_preflight(data.preflight, train_stats, pairs=shape == "pairs")
    if (
        eval_stats is not None
    ):  # held-out rows are scored with the same prompts: the same checks, findings only
        held_out = run_pair_preflight(data.preflight, eval_stats, pairs=shape == "pairs")
        checks += [replace(r, name=f"{r.name} (eval)") for r in held_out if not r.passed]
    for where, stats in ((data.path, train_stats), ("the eval split", eval_stats)):
        if stats is not None and stats.kept == 0:
            findings = "; ".join(
                c.message for c in run_pair_preflight(data.preflight, stats, shape == "pairs") if not c.passed
            )
            raise TuneforgeError(f"{where}: no row is left to train on: {findings}")
    return PreparedPairs(
        train,
        eval_set,
        train_stats,
        eval_stats,
        shape,
        template_source,
        {path: sha256(path) for path in raw.files},
        checks,
        [item.conversation() for item in eval_items if item.desirable in (None, True)],
    )


def read_items(
    rows: Dataset, numbers: list[int], shape: str, data: DataConfig, source: str
) -> list[PreferenceItem]:
    return [preference_item(row, shape, data, f"{source} row {n}") for n, row in zip(numbers, rows)]
