"""Several data sources in one run (`data.mix`): each source keeps its own shape and column names, is
turned into conversations (or plain text), split for evaluation, then weighted.

The evaluation rows are held out before weighting, so an upsampled row never lands on both sides.
    data:
      mix:
        - {path: chat.jsonl, format: messages, weight: 1}
        - {path: faq.csv, format: prompt_completion, columns: {prompt: q, completion: a}, weight: 0.5}
"""

from __future__ import annotations

import random
from pathlib import Path

from datasets import Dataset

from tuneforge.config.schema import DataConfig, SourceConfig
from tuneforge.data.shapes import check_columns, detect_format, row_formatter
from tuneforge.data.sources import RawData, first_occurrences, read_rows
from tuneforge.errors import TuneforgeError


def source_view(source: SourceConfig, data: DataConfig) -> DataConfig:
    """The data section as this one source sees it: its own shape and columns, the run's system prompt."""
    return DataConfig(
        path=source.path,
        format=source.format,
        columns=source.columns,
        prompt_format=source.prompt_format,
        system_prompt=data.system_prompt,
    )


def weighted(items: list, weight: float, rng: random.Random) -> list:
    whole, fraction = int(weight), weight - int(weight)
    return items * whole + rng.sample(items, round(fraction * len(items)))


def load_mix(data: DataConfig) -> tuple[RawData, str]:
    rng = random.Random(data.seed)
    train_items, eval_items, files, shapes = [], [], [], set()
    for source in data.mix:
        rows, source_files = read_rows(source.path, hub_config=source.hub_config, split=source.split)
        view = source_view(source, data)
        fmt = detect_format(rows.column_names, view)
        check_columns(rows.column_names, fmt, view, source=source.path)
        shapes.add("text" if fmt == "text" else "messages")
        to_input = row_formatter(fmt, view)
        items = [to_input(row) for row in rows]
        items = [items[i] for i in first_occurrences(items)] if data.dedupe else items
        rng.shuffle(items)
        n_eval = 0 if data.eval_path else round(len(items) * data.eval_fraction)
        eval_items += items[:n_eval]
        train_items += weighted(items[n_eval:], source.weight, rng)
        files += source_files
    if len(shapes) > 1:
        raise TuneforgeError("data.mix: plain text sources cannot be mixed with conversation sources")
    column = shapes.pop()
    rng.shuffle(train_items)
    if data.max_samples is not None:
        train_items = train_items[: data.max_samples]
    train = Dataset.from_dict({column: train_items})
    held_out = Dataset.from_dict({column: eval_items}) if eval_items else None
    if data.eval_path:
        held_out, eval_files = mixed_eval_file(data, column)
        files += eval_files
    return RawData(train, held_out, files), column


def mixed_eval_file(data: DataConfig, column: str) -> tuple[Dataset, list[Path]]:
    """A separate eval file with a mix is read with the top-level format and columns."""
    rows, files = read_rows(data.eval_path, hub_config=None, split="train")
    view = data.model_copy(update={"path": data.eval_path, "mix": []})
    fmt = detect_format(rows.column_names, view)
    check_columns(rows.column_names, fmt, view, source=data.eval_path)
    to_input = row_formatter(fmt, view)
    return Dataset.from_dict({column: [to_input(row) for row in rows]}), files
