"""A small instruction dataset the project writes itself: plain-English requests -> shell commands.

No third-party text. Requests are drawn from templates; the file names, folders and words of the
evaluation rows never appear in training rows, so exact match on them measures generalisation
(copying an unseen name into the right command), not memorisation.

    python -m tuneforge_dev.demo_data data/demo          # writes train.jsonl and eval.jsonl
    python -m tuneforge_dev.demo_data data/demo --pairs  # also pairs_train.jsonl, pairs_eval.jsonl (DPO)

Preference pairs: the chosen answer is the right command; the rejected one is a near miss, the right
tool on a name the request never mentions, or another tool on the right names.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

INTENTS: list[tuple[list[str], str]] = [
    (["list the files in {dir}", "show me what is inside {dir}", "what files are in {dir}?"], "ls -la {dir}"),
    (["count the lines in {file}", "how many lines does {file} have?"], "wc -l {file}"),
    (["show the last {n} lines of {file}", "print the final {n} lines of {file}"], "tail -n {n} {file}"),
    (["show the first {n} lines of {file}", "print the top {n} lines of {file}"], "head -n {n} {file}"),
    (["search for {word} in {file}", "find lines containing {word} in {file}"], "grep -n '{word}' {file}"),
    (["find all {ext} files under {dir}", "locate every .{ext} file in {dir}"], "find {dir} -name '*.{ext}'"),
    (["create a directory called {dir}", "make a new folder {dir}"], "mkdir -p {dir}"),
    (["delete {file}", "remove the file {file}"], "rm {file}"),
    (["copy {file} to {dir}", "put a copy of {file} in {dir}"], "cp {file} {dir}/"),
    (["how much space does {dir} use?", "show the disk usage of {dir}"], "du -sh {dir}"),
    (["make {file} executable", "give {file} execute permission"], "chmod +x {file}"),
    (["compress {dir} into {stem}.tar.gz", "pack {dir} as {stem}.tar.gz"], "tar -czf {stem}.tar.gz {dir}"),
]

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ren",
    "to",
    "sa",
    "vi",
    "pe",
    "dor",
    "lin",
    "mar",
    "tek",
    "nu",
    "bo",
    "zi",
    "fa",
    "gul",
    "hes",
]
ALL_STEMS = [a + b for a in SYLLABLES for b in SYLLABLES if a != b]
# Every 6th name is held out: evaluation names are new combinations of familiar pieces, so a model
# can only get them right by copying from the request, not by recalling a training row.
STEMS = [s for i, s in enumerate(ALL_STEMS) if i % 6]
EVAL_STEMS = [s for i, s in enumerate(ALL_STEMS) if not i % 6]
EXTS = ["txt", "log", "csv", "py", "md", "json", "yaml", "sh"]
ROOTS = ["/tmp", "/var", "~", ".", "/opt", "/srv", "/data", "~/work"]


def folders(stems: list[str]) -> list[str]:
    return [f"{root}/{stem}" for root in ROOTS for stem in stems]


DIRS, EVAL_DIRS = folders(STEMS), folders(EVAL_STEMS)
WORDS, EVAL_WORDS = STEMS, EVAL_STEMS


def draw_slots(rng: random.Random, stems: list[str], dirs: list[str], words: list[str]) -> dict[str, str]:
    stem = rng.choice(stems)
    return {
        "stem": stem,
        "file": f"{stem}.{rng.choice(EXTS)}",
        "dir": rng.choice(dirs),
        "word": rng.choice(words),
        "ext": rng.choice(EXTS),
        "n": str(rng.randint(2, 60)),
    }


def make_rows(n: int, rng: random.Random, stems: list[str], dirs: list[str], words: list[str]) -> list[dict]:
    rows = []
    for _ in range(n):
        requests, command = rng.choice(INTENTS)
        slots = draw_slots(rng, stems, dirs, words)
        rows.append({"prompt": rng.choice(requests).format(**slots), "completion": command.format(**slots)})
    return rows


def make_pairs(n: int, rng: random.Random, stems: list[str], dirs: list[str], words: list[str]) -> list[dict]:
    rows = []
    while len(rows) < n:
        requests, command = rng.choice(INTENTS)
        slots = draw_slots(rng, stems, dirs, words)
        chosen = command.format(**slots)
        if rng.random() < 0.5:  # the right tool on names from somewhere else
            rejected = command.format(**draw_slots(rng, stems, dirs, words))
        else:  # another tool on the right names
            rejected = rng.choice([c for _, c in INTENTS if c != command]).format(**slots)
        if rejected != chosen:
            rows.append(
                {"prompt": rng.choice(requests).format(**slots), "chosen": chosen, "rejected": rejected}
            )
    return rows


def write_demo_dataset(
    out_dir: str | Path, n_train: int = 6000, n_eval: int = 120, seed: int = 0
) -> tuple[Path, Path]:
    return write_split(out_dir, "", make_rows, n_train, n_eval, seed)


def write_split(
    out_dir: str | Path, prefix: str, make, n_train: int, n_eval: int, seed: int
) -> tuple[Path, Path]:
    """PREFIXtrain.jsonl from the training names, PREFIXeval.jsonl from the held-out ones."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train = make(n_train, rng, STEMS, DIRS, WORDS)
    held_out = make(n_eval, rng, EVAL_STEMS, EVAL_DIRS, EVAL_WORDS)
    paths = out / f"{prefix}train.jsonl", out / f"{prefix}eval.jsonl"
    for path, rows in zip(paths, (train, held_out)):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


def tokenizer_corpus() -> list[str]:
    """Text for training a tiny model's tokenizer. Slots hold single syllables, so BPE learns syllables
    but never whole names: a held-out name is then made of tokens the model has already seen."""
    rows = make_rows(3000, random.Random(1), SYLLABLES, folders(SYLLABLES), SYLLABLES)
    return [f"{row['prompt']}\n{row['completion']}" for row in rows]


def write_demo_pairs(
    out_dir: str | Path, n_train: int = 2000, n_eval: int = 120, seed: int = 1
) -> tuple[Path, Path]:
    return write_split(out_dir, "pairs_", make_pairs, n_train, n_eval, seed)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--pairs"]
    folder = args[0] if args else "data/demo"
    written = write_demo_dataset(folder)
    if "--pairs" in sys.argv:
        written += write_demo_pairs(folder)
    for path in written:
        print(path)
