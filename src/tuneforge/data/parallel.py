"""Line-aligned parallel files: line N of one file is a prompt and line N of the other its completion, as
translation (train.en / train.de) and NL-to-code sets ship them. They become prompt/completion rows.

    data:
      path: train.en               # one prompt per line
      completion_path: train.de    # its completion on the same line
      prompt_format: "Translate to German:\\n{prompt}"

Lines are split on "\\n" only ("\\r\\n" endings and a leading byte-order mark are accepted): a tab, a
U+2028 or any other character stays inside its line, where a pasted TSV would split it. Every line pair
is a row, empty lines included, so row N is line N+1 of both files and nothing shifts: an empty
completion is reported with its row by preflight's trained_tokens check, not silently dropped. Files
whose line counts differ are an error naming both counts.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from tuneforge.errors import TuneforgeError

PROMPT, COMPLETION = "prompt", "completion"


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise TuneforgeError(f"data file not found: {path} (resolved to {path.resolve()})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TuneforgeError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}). Save the file as UTF-8, for "
            f"example: iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}"
        ) from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines[-1] == "" else lines  # the newline that ends the last line starts none


def read_parallel(prompts_path: Path, completions_path: Path) -> Dataset:
    """Rows {prompt, completion}, one per line pair."""
    prompts, completions = read_lines(prompts_path), read_lines(completions_path)
    if len(prompts) != len(completions):
        raise TuneforgeError(
            f"{prompts_path} has {len(prompts):,} lines but {completions_path} has {len(completions):,}: "
            "line N of the completions file must be the completion of line N of the prompts file. Check "
            "that both files are the same split and that no text holds a line break of its own."
        )
    if not prompts:
        raise TuneforgeError(f"{prompts_path}: the file has no rows")
    return Dataset.from_dict({PROMPT: prompts, COMPLETION: completions})
