"""Output files: written whole, through symlinks, never replacing a pipe or a device."""

from __future__ import annotations

import os

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.run.files import write_atomically


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    write_atomically(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "real.jsonl"]


def test_a_named_pipe_is_refused_and_left_as_it_is(tmp_path):
    pipe = tmp_path / "out.jsonl"
    os.mkfifo(pipe)
    with pytest.raises(TuneforgeError, match="not a regular file"):
        write_atomically(pipe, "rows\n")
    assert pipe.exists() and not pipe.is_file()
