"""Cells become text in one place (data/shapes.py): strings and numbers pass, OpenAI-style text parts are
joined with a newline, and a struct, a list, a media part or a null content is an error naming the row, the
column or turn, never its Python repr trained as if it were text. The preference rows go through the same
functions."""

import json

import pytest
from conftest import write_jsonl
from hypothesis import given
from hypothesis import strategies as st

from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data.pairs.rows import preference_item
from tuneforge.data.prepare import prepare_data
from tuneforge.data.shapes import content_text, row_formatter, text
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_tokenizer

DATA = DataConfig(path="d.jsonl")
words = st.text(alphabet="abc xyz\n\t'\"{}", max_size=20)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), words)
cells = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3)
)


@given(cells)
def test_a_cell_is_text_or_an_error_never_a_repr(value):
    if isinstance(value, (dict, list)):
        with pytest.raises(
            TuneforgeError, match=r"^d.jsonl row 3, column 'prompt' holds a (struct|list), not text"
        ):
            text(value, "d.jsonl row 3, column 'prompt'")
    else:
        assert text(value) == ("" if value is None else value if isinstance(value, str) else str(value))


@given(st.lists(words, max_size=4))
def test_text_parts_are_joined_with_a_newline(parts):
    content = [{"type": "text", "text": part} for part in parts]
    assert content_text(content, "r") == "\n".join(parts)
    assert content_text("\n".join(parts), "r") == "\n".join(parts)


def test_messages_with_text_parts_read_as_their_text():
    row = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "count"}, {"type": "text", "text": "a.txt"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "wc -l a.txt"}]},
        ]
    }
    messages = row_formatter("messages", DATA)(row, "d.jsonl row 0")
    assert messages == [
        {"role": "user", "content": "count\na.txt"},
        {"role": "assistant", "content": "wc -l a.txt"},
    ]


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        (
            "messages",
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            r"d.jsonl row 5, turn 0, content part 0 is \"input_audio\": only text parts",
        ),
        ("messages", {"messages": [{"role": "user", "content": None}]}, r"row 5, turn 0: content is null"),
        (
            "messages",
            {"messages": [{"role": "user", "content": {"text": "x"}}]},
            r"turn 0: content is a struct",
        ),
        ("messages", {"messages": "hi"}, r"row 5, column 'messages': expected a list of turns"),
        (
            "sharegpt",
            {"conversations": [{"from": "human", "value": None}]},
            r"row 5, turn 0: content is null",
        ),
        ("alpaca", {"instruction": ["a", "b"], "output": "x"}, r"row 5, column 'instruction' holds a list"),
        ("text", {"text": {"body": "x"}}, r"row 5, column 'text' holds a struct"),
        (
            "prompt_completion",
            {"prompt": "a", "completion": {"text": "b"}},
            r"column 'completion' holds a struct",
        ),
    ],
)
def test_structured_cells_are_errors_naming_the_row(fmt, row, message):
    with pytest.raises(TuneforgeError, match=message):
        row_formatter(fmt, DATA)(row, "d.jsonl row 5")


def test_only_the_columns_a_prompt_uses_are_read():
    data = DataConfig(path="d.jsonl", prompt_format="Q: {question}", columns={"completion": "answer"})
    row = {"question": "count a.txt", "answer": "wc -l a.txt", "meta": {"source": "forum", "votes": 3}}
    assert row_formatter("prompt_completion", data)(row, "r")[0]["content"] == "Q: count a.txt"


def test_preference_rows_refuse_structured_cells_too():
    parts = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    with pytest.raises(TuneforgeError, match=r"row 2, prompt, turn 0, content part 0 is \"image_url\""):
        preference_item({"prompt": parts, "chosen": "a", "rejected": "b"}, "pairs", DATA, "row 2")
    with pytest.raises(TuneforgeError, match=r"row 2, chosen holds a struct"):
        preference_item({"prompt": "q", "chosen": {"text": "a"}, "rejected": "b"}, "pairs", DATA, "row 2")
    null = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]
    with pytest.raises(TuneforgeError, match=r"row 2, rejected, turn 1: content is null"):
        preference_item({"prompt": "q", "chosen": "a", "rejected": null}, "pairs", DATA, "row 2")


def test_a_file_of_content_parts_trains_on_their_text(tmp_path, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    parts = [{"type": "text", "text": "count lines in"}, {"type": "text", "text": "a.txt"}]
    rows = [
        {"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": "wc -l a.txt"}]}
    ]
    path = write_jsonl(tmp_path / "parts.jsonl", rows * 4)
    data = prepare_data(DataConfig(path=str(path), eval_fraction=0), tokenizer, 64)
    rendered = tokenizer.decode(data.train[0]["input_ids"])
    assert "count lines in\na.txt" in rendered and "'type'" not in rendered and "wc -l a.txt" in rendered
    assert json.dumps(parts) not in rendered
