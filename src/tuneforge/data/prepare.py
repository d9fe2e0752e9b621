"""Data stage entry point: config section `data` and a track (the kind of sample) -> tokenized train/eval
sets plus what happened, as one `PreparedData` whatever the track.

load rows (one source, or data.mix) -> the track checks their columns -> install the prompt template ->
encode and check every row through the track (or reuse the tokenization cache) -> resolve max_length ->
the track's preflight checks, and the template's parity with transformers' own rendering

    data = prepare_data(config.data, tokenizer, max_length=None, context_length=2048)   # None: auto
    data = prepare_data(config.data, tokenizer, None, 2048, track=PAIRS)                # preference pairs
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import DataConfig
from tuneforge.data import cache
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.mix import load_mix, mixed_view
from tuneforge.data.preflight import check_template_parity, run_checks
from tuneforge.data.prepared import PreparedData
from tuneforge.data.samples import SAMPLES
from tuneforge.data.sources import RawData, load_data_rows, looks_local, sha256
from tuneforge.data.templates import install_chat_template
from tuneforge.data.track import Track
from tuneforge.errors import os_fault

__all__ = ["PreparedData", "prepare_data"]


def print_notice(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)  # not stdout: `tuneforge data --json` prints its report there


def prepare_data(
    data: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None,
    context_length: int | None = None,
    track: Track = SAMPLES,
    notice: Callable[[str], None] = print_notice,
) -> PreparedData:
    """`max_length=None` resolves train.max_length: auto from the training samples' lengths. `notice`
    tells of a damaged cache entry that is rebuilt, or an entry that could not be stored."""
    check_reachable(data)
    try:
        raw, shape, view = load_rows(data, track)
        template_source = install_chat_template(tokenizer, data.template)
        file_hashes = {path: sha256(path) for path in raw.files}
    except OSError as exc:  # no permission to read a file or a folder on its path
        raise os_fault(exc, "data: ") or exc from None
    key = cache.cache_key(
        data,
        fmt=f"{track.name}:{shape}",
        file_hashes=list(file_hashes.values()),
        datasets_fingerprints=[d._fingerprint for d in (raw.train, raw.eval) if d is not None],
        tokenizer=tokenizer,
        max_length=max_length,
        context_length=context_length,
    )
    encoder = ChatEncoder(tokenizer)
    cached = cache.load(key, track.stats_type, notice) if data.cache else None
    encoded = cached or track.encode(raw, shape, view, encoder, max_length, context_length)
    if data.cache and cached is None:
        cache.store(key, encoded, notice)
    checks = track.preflight(view, tokenizer, encoded, shape)
    if shape != "text":  # documents are trained without a template
        checks += run_checks(data.preflight, {"template_parity": lambda: check_template_parity(encoder)})
    train, eval_set, train_stats, eval_stats = encoded
    return PreparedData(
        train,
        eval_set,
        train_stats,
        eval_stats,
        shape,
        template_source,
        file_hashes,
        checks,
        cached is not None,
        track.eval_items(raw, shape, view),
    )


def load_rows(data: DataConfig, track: Track) -> tuple[RawData, str, DataConfig]:
    """Rows, their shape, and the data section the track should read them with."""
    if data.mix:
        raw, shape = load_mix(data, track)
        return raw, shape, mixed_view(data, shape)
    raw = load_data_rows(data)
    shape = track.shape(raw.train.column_names, data, data.path)
    if raw.eval is not None and data.eval_path:
        track.shape(raw.eval.column_names, data, data.eval_path)
    return raw, shape, data


def check_reachable(data: DataConfig) -> None:
    """Name a symlink loop or a file in place of a folder on a data path: `Path.is_file()` reads both as
    "no such file", and the sources would then say it is missing or look for it on the hub."""
    keys = ("path", "eval_path", "completion_path", "eval_completion_path")
    sources = [(f"data.{key}", getattr(data, key)) for key in keys]
    for i, source in enumerate(data.mix):
        sources += [(f"data.mix[{i}].{key}", getattr(source, key)) for key in ("path", "completion_path")]
    for key, path in sources:
        local = os.path.expanduser(path or "")
        if not path or not (looks_local(path) or os.path.lexists(local)):
            continue  # a hub id
        try:
            os.stat(local)
        except FileNotFoundError:
            continue  # the sources say so, with where a relative path is read from
        except OSError as exc:
            raise os_fault(exc, f"{key}: ") or exc from None
