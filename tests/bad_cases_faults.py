"""Bad inputs for the table in test_bad_inputs.py: faults (issue 21). Same shape as bad_input_cases.CASES:
name -> (builder(World) -> CLI arguments, texts the message must hold).

Faults of the machine's files: symlink loops, a file where a folder should be. No permission cannot be
built here (the tests run as root, which reads anything): test_faults.py plants it."""

from __future__ import annotations

import os
from pathlib import Path

from bad_input_cases import World

LOOP = "Too many levels of symbolic links"


def symlink_loop(w: World, name: str) -> Path:
    """`name` -> `name`.other -> `name`: opening either never reaches a file."""
    link, other = w.tmp / name, w.tmp / f"{name}.other"
    if not os.path.lexists(link):
        os.symlink(other, link)
        os.symlink(link, other)
    return link


def under_a_file(w: World, name: str) -> Path:
    return w.file("plain.txt", "a file, not a folder") / name


def mixed_with_a_loop(w: World) -> list[str]:
    mix = f"data.mix=[{{path: {w.data}}}, {{path: {symlink_loop(w, 'part.jsonl')}}}]"
    return w.train(w.config(), "--set", "data.path=null", "--set", mix)


CASES = {
    "data.path is a symlink loop": (
        lambda w: w.train(w.config(data=symlink_loop(w, "loop.jsonl"))),
        ["data.path", LOOP, "loop.jsonl", "fix the link"],
    ),
    "data.path is a symlink loop without a file suffix": (
        lambda w: w.train(w.config(data=symlink_loop(w, "rows"))),
        ["data.path", LOOP, "rows"],
    ),
    "a data.mix source is a symlink loop": (mixed_with_a_loop, ["data.mix[1].path", LOOP, "part.jsonl"]),
    "data.completion_path is a symlink loop": (
        lambda w: w.train(
            w.config(data=w.file("prompts.txt", "a\nb\n")),
            "--set",
            f"data.completion_path={symlink_loop(w, 'answers.txt')}",
        ),
        ["data.completion_path", LOOP, "answers.txt"],
    ),
    "data.path under a file": (
        lambda w: w.train(w.config(data=under_a_file(w, "train.jsonl"))),
        ["data.path", "Not a directory", "plain.txt is a file", "check the path"],
    ),
    "config is a symlink loop": (
        lambda w: ["train", str(symlink_loop(w, "loop.yaml"))],
        ["config", LOOP, "loop.yaml"],
    ),
    "config under a file": (
        lambda w: ["train", str(under_a_file(w, "c.yaml"))],
        ["config", "Not a directory", "plain.txt is a file"],
    ),
    "--output-dir under a file": (
        lambda w: ["train", w.config(), "--output-dir", str(under_a_file(w, "run"))],
        ["Not a directory", "plain.txt is a file"],
    ),
    "--output-dir is a symlink loop": (
        lambda w: ["train", w.config(), "--output-dir", str(symlink_loop(w, "run-loop"))],
        [LOOP, "run-loop", "fix the link"],
    ),
}
