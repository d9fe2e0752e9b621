"""Load the user's rows: local JSON/JSONL/CSV/TSV/Parquet, a folder saved by `datasets`, a hub dataset, or
two line-aligned text files (`completion_path`, data/parallel.py).

Returns plain `datasets.Dataset` objects for train and eval, and the local files read (for the manifest).
A file `datasets` cannot read is read again to name the line (data/jsonfile.py for JSON); the reader's own
log line is held back, so the user sees tuneforge's message only.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from tuneforge.config.schema import DataConfig
from tuneforge.data.jsonfile import check_json_file, read_jsonl  # noqa: F401 - read_jsonl: callers import it here
from tuneforge.data.parallel import read_parallel
from tuneforge.errors import TuneforgeError

NEWLINE = b"\n"
BUILDER_BY_SUFFIX = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


@dataclass
class RawData:
    train: Dataset
    eval: Dataset | None
    files: list[Path] = field(default_factory=list)
    # Where each row sits in its file (0-based), after dedupe, sampling and the train/eval split shuffled
    # them: what messages about a row name. None: the rows are in file order.
    train_numbers: list[int] | None = None
    eval_numbers: list[int] | None = None

    def numbers(self, split: str) -> list[int]:
        rows = self.train if split == "train" else self.eval
        given = self.train_numbers if split == "train" else self.eval_numbers
        return given if given is not None else list(range(len(rows) if rows is not None else 0))


ROW_NUMBER = "__tuneforge_row__"  # carried through dedupe, sampling and the split, then removed


def load_data_rows(data: DataConfig) -> RawData:
    """data.path (and data.eval_path) read as the data section says: split, sampling, dedupe."""
    return load_raw_data(
        data.path,
        hub_config=data.hub_config,
        split=data.split,
        completion_path=data.completion_path,
        eval_path=data.eval_path,
        eval_completion_path=data.eval_completion_path,
        eval_fraction=data.eval_fraction,
        max_samples=data.max_samples,
        seed=data.seed,
        dedupe=data.dedupe,
    )


def load_raw_data(
    path: str,
    *,
    hub_config: str | None = None,
    split: str = "train",
    completion_path: str | None = None,
    eval_path: str | None = None,
    eval_completion_path: str | None = None,
    eval_fraction: float = 0.1,
    max_samples: int | None = None,
    seed: int = 42,
    dedupe: bool = False,
) -> RawData:
    rows, files = read_rows(path, hub_config=hub_config, split=split, completion_path=completion_path)
    if len(rows) == 0:
        raise TuneforgeError(f"data {path!r} has no rows")
    rows = rows.add_column(ROW_NUMBER, list(range(len(rows))))
    if dedupe:
        rows = drop_duplicate_rows(rows)
    if max_samples is not None and max_samples < len(rows):
        rows = rows.shuffle(seed=seed).select(range(max_samples))
    if eval_path:
        eval_rows, eval_files = read_rows(
            eval_path, hub_config=hub_config, split=split, completion_path=eval_completion_path
        )
        train, train_numbers = numbered(rows)
        return RawData(train, eval_rows, files + eval_files, train_numbers)
    if eval_fraction > 0 and len(rows) >= 2:
        n_eval = max(1, round(len(rows) * eval_fraction))
        parts = rows.train_test_split(test_size=n_eval, seed=seed)
        (train, train_numbers), (held_out, eval_numbers) = numbered(parts["train"]), numbered(parts["test"])
        return RawData(train, held_out, files, train_numbers, eval_numbers)
    train, train_numbers = numbered(rows)
    return RawData(train, None, files, train_numbers)


def numbered(rows: Dataset) -> tuple[Dataset, list[int]]:
    """The rows without their file positions, and the positions."""
    return rows.remove_columns(ROW_NUMBER), rows[ROW_NUMBER]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def first_occurrences(items) -> list[int]:
    """Indices of the items that are not exact repeats of an earlier one (compared as sorted JSON)."""
    seen: set[str] = set()
    keep = []
    for index, item in enumerate(items):
        key = json.dumps(item, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return keep


def drop_duplicate_rows(rows: Dataset) -> Dataset:
    """Rows equal in every column but their file position count as repeats."""
    content = rows.remove_columns(ROW_NUMBER) if ROW_NUMBER in rows.column_names else rows
    return rows.select(first_occurrences(content))


def read_rows(
    path: str, *, hub_config: str | None, split: str, completion_path: str | None = None
) -> tuple[Dataset, list[Path]]:
    """The rows of a file, a saved folder or a hub dataset; with completion_path, of two line-aligned files."""
    local = Path(path).expanduser()
    if completion_path is not None:
        completions = Path(completion_path).expanduser()
        return read_parallel(local, completions), [local, completions]
    if local.is_file():
        return read_file(local), [local]
    if local.is_dir():
        return read_saved_folder(local, split), []
    if looks_local(path):
        raise TuneforgeError(
            f"data file not found: {path} (resolved to {local.resolve()}). Check data.path; "
            "relative paths are read from the directory you run tuneforge in."
        )
    try:
        return load_dataset(path, name=hub_config, split=split), []
    except Exception as exc:  # the hub raises many types; the user needs the id and the reason
        raise TuneforgeError(
            f"could not load hub dataset {path!r} (config={hub_config}, split={split}): {exc}"
        ) from exc


def looks_local(path: str) -> bool:
    """A hub id is `name` or `owner/name`; anything with a file suffix or a path prefix is meant to be a file."""
    return (
        Path(path).suffix.lower() in BUILDER_BY_SUFFIX
        or path.startswith((".", "/", "~"))
        or path.count("/") > 1
        or "\\" in path
    )


def read_file(path: Path) -> Dataset:
    suffix = path.suffix.lower()
    builder = BUILDER_BY_SUFFIX.get(suffix)
    if builder is None:
        raise TuneforgeError(
            f"{path}: unsupported file type {suffix!r}; use one of {', '.join(BUILDER_BY_SUFFIX)}"
        )
    delimiter = "\t" if suffix == ".tsv" else ","
    kwargs = {"delimiter": delimiter} if suffix == ".tsv" else {}
    if builder in ("json", "csv"):
        check_utf8(path)  # Arrow accepts invalid UTF-8 in JSON strings and fails later, far from the file
    try:
        with quiet_loaders():
            return load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as exc:
        # datasets' Arrow/pandas errors rarely say where: re-read the file only now, to name the line
        if builder == "json":
            check_json_file(path)
        if builder == "csv":
            check_csv_file(path, delimiter)
        raise TuneforgeError(f"{path}: could not be read as {builder}: {exc}") from exc


@contextmanager
def quiet_loaders():
    """datasets' file readers log their failure ("Failed to load JSON from file ... in row 0") to stderr
    before raising, under a progress bar; the error tuneforge then raises says it better, with the line,
    so neither is printed."""
    loaders = logging.getLogger("datasets.packaged_modules")
    level, bars_were_off = loaders.level, are_progress_bars_disabled()
    loaders.setLevel(logging.CRITICAL)
    disable_progress_bars()
    try:
        yield
    finally:
        loaders.setLevel(level)
        if not bars_were_off:
            enable_progress_bars()


def check_utf8(path: Path) -> None:
    """In 1 MiB blocks: a large file is never held in memory twice."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                at = min(max(exc.start, 0), len(block) - 1)
                bad_line = line + block.count(NEWLINE, 0, at)
                raise TuneforgeError(
                    f"{path}:{bad_line}: not UTF-8 text (byte 0x{block[at]:02x}). Save "
                    f"the file as UTF-8, for example: iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}"
                ) from None
            line += block.count(NEWLINE)


def check_csv_file(path: Path, delimiter: str) -> None:
    """Name the first row whose field count differs from the header's (quoted multi-line fields allowed)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise TuneforgeError(f"{path}: empty file; the first line must name the columns")
        try:
            for row in reader:
                if row and len(row) != len(header):
                    raise TuneforgeError(
                        f"{path}:{reader.line_num}: {len(row)} fields where the header has {len(header)} "
                        f"({', '.join(header)}). Quote fields that contain '{delimiter}'."
                    )
        except csv.Error as exc:
            raise TuneforgeError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def read_saved_folder(path: Path, split: str) -> Dataset:
    try:
        loaded = load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise TuneforgeError(f"{path}: a folder must be saved with datasets' save_to_disk: {exc}") from None
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise TuneforgeError(f"{path}: no split {split!r}; it has {', '.join(loaded)}. Set data.split.")
        return loaded[split]
    return loaded
