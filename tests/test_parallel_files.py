"""Line-aligned parallel files (data.completion_path): line N of one file is the prompt, line N of the other
its completion. Lines split at "\\n" only, CRLF and a BOM accepted, empty lines kept so nothing shifts, and
different line counts are an error naming both files."""

import csv

import pytest
from conftest import needs_shared
from hypothesis import given
from hypothesis import strategies as st

from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data.prepare import prepare_data
from tuneforge.data.sources import load_data_rows
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_tokenizer

# Anything but a line break: tabs, U+2028, U+0085 and a lone "\r" inside a line stay in it.
line_text = st.text(
    alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=12
).filter(lambda line: not line.endswith("\r"))  # a line's last "\r" belongs to its "\r\n" ending


def write(path, lines, ending="\n", bom=False):
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "".join(line + ending for line in lines).encode())
    return str(path)


@given(
    pairs=st.lists(st.tuples(line_text, line_text), min_size=1, max_size=6),
    ending=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_rows_are_the_lines_side_by_side(tmp_path_factory, pairs, ending, bom):
    folder = tmp_path_factory.mktemp("parallel")
    prompts = write(folder / "src.txt", [p for p, _ in pairs], ending, bom)
    completions = write(folder / "tgt.txt", [c for _, c in pairs], ending)
    rows = load_data_rows(DataConfig(path=prompts, completion_path=completions, eval_fraction=0)).train
    assert list(zip(rows["prompt"], rows["completion"])) == pairs


def test_different_line_counts_name_both_files(tmp_path):
    prompts = write(tmp_path / "train.en", ["a", "b", "c"])
    completions = write(tmp_path / "train.de", ["x", "y"])
    with pytest.raises(TuneforgeError, match=r"train.en has 3 lines but .*train.de has 2"):
        load_data_rows(DataConfig(path=prompts, completion_path=completions))


def test_eval_files_and_mix_sources_take_completion_paths(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    nl = [f"count the lines of f{i}.txt" for i in range(8)]
    code = [f"wc -l f{i}.txt" for i in range(8)]
    files = {name: write(tmp_path / name, lines) for name, lines in
             (("train.nl", nl[:6]), ("train.code", code[:6]), ("dev.nl", nl[6:]), ("dev.code", code[6:]))}  # fmt: skip
    data = DataConfig(
        path=files["train.nl"],
        completion_path=files["train.code"],
        eval_path=files["dev.nl"],
        eval_completion_path=files["dev.code"],
        prompt_format="Shell: {prompt}",
    )
    prepared = prepare_data(data, tokenizer, 64)
    assert prepared.format == "prompt_completion" and len(prepared.train) == 6 and len(prepared.eval) == 2
    assert prepared.eval_items[0][0]["content"] == "Shell: count the lines of f6.txt"
    assert set(prepared.file_hashes) == {tmp_path / name for name in files}
    mixed = DataConfig(
        mix=[{"path": files["train.nl"], "completion_path": files["train.code"]}], eval_fraction=0
    )
    assert len(prepare_data(mixed, tokenizer, 64).train) == 6


def test_an_empty_line_stays_a_row_and_is_named(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    prompts = write(tmp_path / "q.txt", [f"count f{i}.txt" for i in range(5)])
    completions = write(
        tmp_path / "a.txt", ["wc -l f0.txt", "wc -l f1.txt", "", "wc -l f3.txt", "wc -l f4.txt"]
    )
    data = DataConfig(path=prompts, completion_path=completions, eval_fraction=0)
    prepared = prepare_data(data, tokenizer, 64)
    finding = next(r.message for r in prepared.preflight if r.name == "trained_tokens")
    assert "1 rows have an empty answer (" in finding and "q.txt: row 2)" in finding
    assert prepared.train_stats.rows == 5 and prepared.train_stats.kept == 4


def test_a_real_nl_to_code_set_split_into_two_files(tmp_path):
    """docker_nl's natural-language requests and their commands, one per line in two files, as such sets
    ship; the rows come back in order, the ones whose text holds a line break left out when writing."""
    with needs_shared("data", "docker_nl", "Docker_dataset.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if "\n" not in r["input"] + r["output"]]
    prompts = write(tmp_path / "docker.nl", [r["input"] for r in rows], "\r\n")
    completions = write(tmp_path / "docker.cmd", [r["output"] for r in rows], "\r\n")
    read = load_data_rows(DataConfig(path=prompts, completion_path=completions, eval_fraction=0)).train
    assert len(read) == len(rows) > 2000
    assert read["prompt"] == [r["input"] for r in rows] and read["completion"] == [r["output"] for r in rows]
