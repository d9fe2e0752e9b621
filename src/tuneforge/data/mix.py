"""Several data sources in one run (`data.mix`): each source keeps its own shape and column names, is
turned into the track's common rows (conversations or plain text for SFT samples; prompt plus answers for
preference pairs), split for evaluation, then weighted.

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
from tuneforge.data.sources import RawData, first_occurrences, read_rows
from tuneforge.data.track import Track
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


def load_mix(data: DataConfig, track: Track) -> tuple[RawData, str]:
    """The mixed rows, in the track's common form, and that form's shape."""
    rng = random.Random(data.seed)
    train_items, eval_items, files, shapes = [], [], [], set()
    for source in data.mix:
        rows, source_files = read_rows(
            source.path,
            hub_config=source.hub_config,
            split=source.split,
            completion_path=source.completion_path,
        )
        view = source_view(source, data)
        shape, items = track.mix_rows(
            rows, track.shape(rows.column_names, view, source.path), view, source.path
        )
        shapes.add(shape)
        items = [items[i] for i in first_occurrences(items)] if data.dedupe else items
        rng.shuffle(items)
        n_eval = 0 if data.eval_path else round(len(items) * data.eval_fraction)
        eval_items += items[:n_eval]
        train_items += weighted(items[n_eval:], source.weight, rng)
        files += source_files
    if len(shapes) > 1:
        raise TuneforgeError("data.mix: plain text sources cannot be mixed with conversation sources")
    shape = shapes.pop()
    rng.shuffle(train_items)
    if data.max_samples is not None:
        train_items = train_items[: data.max_samples]
    train = Dataset.from_list(train_items)
    held_out = Dataset.from_list(eval_items) if eval_items else None
    if data.eval_path:
        held_out, eval_files = mixed_eval_file(data, track)
        files += eval_files
    return RawData(train, held_out, files), shape


def mixed_eval_file(data: DataConfig, track: Track) -> tuple[Dataset, list[Path]]:
    """A separate eval file with a mix is read with the top-level format and columns."""
    rows, files = read_rows(
        data.eval_path, hub_config=None, split="train", completion_path=data.eval_completion_path
    )
    view = data.model_copy(update={"path": data.eval_path, "mix": []})
    _, items = track.mix_rows(
        rows, track.shape(rows.column_names, view, data.eval_path), view, data.eval_path
    )
    return Dataset.from_list(items), files


def mixed_view(data: DataConfig, shape: str) -> DataConfig:
    """The data section the mixed rows are read back with: default column names in the common shape, the
    system prompt already in every conversation; the run's length and preflight options as they are."""
    return data.model_copy(
        update={
            "path": "data.mix",
            "mix": [],
            "format": shape,
            "columns": type(data.columns)(),
            "prompt_format": None,
            "system_prompt": None,
        }
    )
