"""A JSON file `datasets` cannot read gets tuneforge's message only, first: file:line, the line itself (cut to
200 characters), and for Python dict reprs the hint to write JSON. The reader's own "Failed to load JSON
... in row 0" log line is held back."""

import json
import logging

import pytest
from conftest import quick_config
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import config_to_yaml
from tuneforge.data.jsonfile import check_json_file, read_jsonl
from tuneforge.data.sources import read_file
from tuneforge.errors import TuneforgeError

GOOD = '{"prompt": "count a.txt", "completion": "wc -l a.txt"}'
BROKEN = {
    "repeated key": ('{"prompt": "a", "prompt": "b", "completion": "c"}', "key 'prompt' is written twice"),
    "lone surrogate": ('{"prompt": "a\\ud800", "completion": "c"}', "column 'prompt' holds a lone surrogate"),
    "python dict": (
        "{'prompt': 'a', 'completion': 'b', 'ok': True}",
        "looks like Python dict reprs (str(dict)), not JSON: write rows with json.dumps",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_our_message_first_and_no_loader_noise(name, tmp_path, tiny_models, caplog, capfd):
    line, expected = BROKEN[name]
    data = tmp_path / "rows.jsonl"
    data.write_text(f"{GOOD}\n{GOOD}\n{line}\n")
    config = tmp_path / "c.yaml"
    config.write_text(config_to_yaml(quick_config(tiny_models("llama"), data)))
    caplog.set_level(logging.WARNING)
    result = CliRunner().invoke(app, ["data", str(config)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {data}:3: "), result.output
    assert expected in result.output
    captured = capfd.readouterr()
    for text in (result.output, caplog.text, captured.out, captured.err):
        assert "Failed to load JSON" not in text and "in row 0" not in text


def test_python_dict_lines_in_a_json_list_get_the_hint(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text("[\n  {'prompt': 'a', 'completion': None}\n]\n")
    with pytest.raises(
        TuneforgeError, match=r"rows.json:2: invalid JSON .*\n.*Python dict reprs .*fixed.json"
    ):
        read_file(path)


def test_a_repeated_key_in_a_json_list_names_its_line(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(f'[\n  {GOOD},\n  {GOOD}\n  ,\n  {{"prompt": "a",\n   "prompt": "b"}}\n]')
    with pytest.raises(
        TuneforgeError, match=r"rows.json:5: item 2 of the JSON list: key 'prompt' is written"
    ):
        check_json_file(path)


def test_a_long_bad_line_is_shown_cut(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("{'prompt': '" + "x" * 1000 + "'}\n")
    with pytest.raises(TuneforgeError) as error:
        read_file(path)
    shown = str(error.value).split("): ", 1)[1].split("\n")[0]
    assert shown == "{'prompt': '" + "x" * 188 + "…"


def test_lines_split_only_at_newlines(tmp_path):
    """JSON may hold U+2028 raw inside a string; splitlines() would cut the row there. A byte-order mark
    and CRLF endings, as Windows editors write, are read too."""
    rows = [{"prompt": "a\u2028b\x85c", "completion": "d"}, {"prompt": "e", "completion": "f"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\ufeff" + "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), newline="")
    assert read_jsonl(path) == rows
