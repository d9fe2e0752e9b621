"""JSON and JSONL files read with Python's json, to say where a file is broken and what to do about it.

`datasets` (Arrow) reads the rows; when it fails, its message names no line ("JSON parse error: ... in row
0"), so the file is read again here, only then. Reported with file:line: invalid JSON; a row that is not an
object; a key written twice in one object (Python keeps the last, Arrow refuses the file); a lone UTF-16
surrogate escape such as "\\ud800" (half of an emoji cut in two: not text any tokenizer can encode); and
lines that are Python dict reprs (str(dict): 'single quotes', True, None) instead of JSON, with the
command that converts them.

Lines are split on "\\n" only (a trailing "\\r" dropped), as Arrow splits them: str.splitlines would also
split inside strings holding U+2028 or other Unicode line breaks, which JSON allows raw.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError

SHOWN = 200  # characters of a bad line shown in a message
WHITESPACE = re.compile(r"[ \t\n\r]*")
# Keys in single quotes, or Python's True/False/None as values: what str(dict) writes and JSON does not.
PYTHON_REPR = re.compile(r"[{,]\s*'[^'\n]*'\s*:|:\s*(True|False|None)\s*[,}\]]")
CONVERT_LINES = (
    'python -c "import ast, json, sys; [print(json.dumps(ast.literal_eval(line))) for line in sys.stdin '
    'if line.strip()]" < {name} > fixed.jsonl'
)
CONVERT_LIST = (
    'python -c "import ast, json, sys; json.dump(ast.literal_eval(sys.stdin.read()), sys.stdout)" '
    "< {name} > fixed.json"
)


class RepeatedKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: refuse what json.loads would silently resolve by keeping the last value."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise RepeatedKey(key)
        seen[key] = value
    return seen


DECODER = json.JSONDecoder(object_pairs_hook=unique_keys)


def excerpt(line: str) -> str:
    """The line as the user would see it in an editor, cut to SHOWN characters."""
    shown = line if len(line) <= SHOWN else line[:SHOWN] + "…"
    return shown if shown.isprintable() else repr(shown)


def python_repr_hint(line: str, convert: str, path: Path) -> str:
    if not PYTHON_REPR.search(line):
        return ""
    return (
        "\nThis looks like Python dict reprs (str(dict)), not JSON: write rows with json.dumps. To convert "
        f"this file: {convert.format(name=shlex.quote(str(path)))}"
    )


def check_surrogates(row: dict[str, Any], where: str) -> None:
    for key, value in row.items():
        try:
            json.dumps([key, value], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = f"\\u{ord(exc.object[exc.start]):04x}"
            raise TuneforgeError(
                f"{where}: column {key!r} holds a lone surrogate ({bad}), half of a UTF-16 pair: not valid "
                "Unicode, and no tokenizer can encode it. Fix or remove that text (often an emoji cut in "
                "two by a length limit)."
            ) from None


def decode_line(line: str, where: str, path: Path) -> Any:
    try:
        return DECODER.decode(line)
    except RepeatedKey as exc:
        raise TuneforgeError(
            f"{where}: key {exc.key!r} is written twice in one object; JSON readers disagree on which value "
            f"wins. Keep one: {excerpt(line)}"
        ) from None
    except json.JSONDecodeError as exc:
        hint = python_repr_hint(line, CONVERT_LINES, path)
        raise TuneforgeError(
            f"{where}: invalid JSON line ({exc.msg}, column {exc.colno}): {excerpt(line)}{hint}"
        ) from None


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a bad line is an error that names the file and the line number."""
    rows = []
    text = path.read_text(encoding="utf-8").removeprefix("\ufeff")  # a byte-order mark is not JSON
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{path}:{number}"
        row = decode_line(line, where, path)
        if not isinstance(row, dict):
            raise TuneforgeError(f"{where}: each JSONL line must be an object, got {excerpt(line)}")
        check_surrogates(row, where)
        rows.append(row)
    return rows


def check_json_list(path: Path, text: str) -> int:
    """A file holding one JSON list of objects; returns how many it holds."""
    lines = text.split("\n")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        line = lines[exc.lineno - 1].removesuffix("\r")
        hint = python_repr_hint(line, CONVERT_LIST, path)
        raise TuneforgeError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}): {excerpt(line)}{hint}"
        ) from None
    # Valid JSON: walk the items one by one, so a repeated key or a bad item is named by its line.
    at, counted, line, number = text.index("[") + 1, 0, 1, 0
    while True:
        start = WHITESPACE.match(text, at).end()
        if text.startswith("]", start):
            return number
        line, counted = line + text.count("\n", counted, start), start
        where = f"{path}:{line}: item {number} of the JSON list"
        try:
            item, at = DECODER.raw_decode(text, start)
        except RepeatedKey as exc:
            raise TuneforgeError(
                f"{where}: key {exc.key!r} is written twice in one object; JSON readers disagree on which "
                "value wins. Keep one."
            ) from None
        if not isinstance(item, dict):
            raise TuneforgeError(f"{where} is not an object: {excerpt(json.dumps(item))}")
        check_surrogates(item, where)
        at = WHITESPACE.match(text, at).end()
        at += text.startswith(",", at)
        number += 1


def check_json_file(path: Path) -> None:
    """Find the exact bad line before `datasets` turns it into an opaque Arrow error."""
    text = path.read_text(encoding="utf-8", errors="strict").removeprefix("\ufeff")
    stripped = text.strip()
    if not stripped or stripped == "[]":
        raise TuneforgeError(f"{path}: the file has no rows")
    rows = check_json_list(path, text) if stripped.startswith("[") else len(read_jsonl(path))
    if not rows:
        raise TuneforgeError(f"{path}: the file has no rows")
