"""A small tool-calling dataset the project writes itself: plain-English requests -> calls of fake file tools.

Each row offers two tools, as JSON schemas in its `tools` column: the one the request needs and another
drawn at random, in random order (as glaive's rows offer one or two), so which to call comes from the
request (naming one of the two at random is right half the time). Offering all five in every row put some
350 tokens of schemas before each request, and the tiny random model had not learned to read arguments
from the request after 1,125 steps. Two shapes, OpenAI-style messages: a request answered by a call (the
assistant turn has only `tool_calls`), and, for tools whose result reads back as a sentence, the call, its
result (a `tool` turn) and the answer written from it. Arguments come from small sets of file names,
folders, words and counts that all occur in training; a call (tool and arguments) held out for evaluation
never occurs in training, so the tool-call exact match on held-out rows measures composing known pieces
into a new call: a model that repeats calls it was trained on scores 0.

    python -m tuneforge_dev.tool_data data/tools          # writes train.jsonl and eval.jsonl
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from pathlib import Path

from tuneforge.data.tool_format import render_calls

FILES = ["notes.txt", "app.log", "sales.csv", "main.py", "README.md", "config.json", "setup.yaml", "build.sh",
         "todo.txt", "error.log", "users.csv", "test.py"]  # fmt: skip
DIRS = ["docs", "logs", "src", "music", "photos", "backups", "downloads", "videos"]
WORDS = ["error", "todo", "user", "import", "warning", "total", "http", "config"]
COUNTS = ["5", "10", "20", "50"]
VALUES = {
    "lines": [3, 12, 40, 128, 256, 900],
    "matches": [1, 2, 7, 15, 33],
    "size": ["4K", "96K", "2M", "1G"],
}
HELD_OUT = 2  # calls of each tool, so every tool has the same share of the held-out rows


def schema(name: str, description: str, **properties: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {key: {"type": kind} for key, kind in properties.items()},
                "required": list(properties),
            },
        },
    }


TOOLS = {
    "list_files": schema("list_files", "List a folder's files", path="string"),
    "count_lines": schema("count_lines", "Count a file's lines", path="string"),
    "tail_file": schema("tail_file", "Last lines of a file", path="string", lines="integer"),
    "search_file": schema("search_file", "Lines of a file holding a word", path="string", pattern="string"),
    "disk_usage": schema("disk_usage", "Space a folder uses", path="string"),
}

# (requests, tool, arguments from the slots, (result key, answer from the slots and the result) or None)
INTENTS = [
    (["list the files in {dir}", "what files are in the {dir} folder?"], "list_files", {"path": "{dir}"}, None),
    (["count the lines in {file}", "how many lines does {file} have?"], "count_lines", {"path": "{file}"},
     ("lines", "{file} has {value} lines.")),
    (["show the last {n} lines of {file}", "print the final {n} lines of {file}"], "tail_file",
     {"path": "{file}", "lines": "{n}"}, None),
    (["search for {word} in {file}", "find lines containing {word} in {file}"], "search_file",
     {"path": "{file}", "pattern": "{word}"}, ("matches", "{value} lines of {file} hold {word}.")),
    (["how much space does the {dir} folder use?", "show the disk usage of {dir}"], "disk_usage", {"path": "{dir}"},
     ("size", "{dir} uses {value}.")),
]  # fmt: skip
SLOTS = {"dir": DIRS, "file": FILES, "n": COUNTS, "word": WORDS}


def arguments(template: dict, slots: dict, tool: str) -> dict:
    kinds = TOOLS[tool]["function"]["parameters"]["properties"]
    filled = {key: value.format(**slots) for key, value in template.items()}
    return {key: int(value) if kinds[key]["type"] == "integer" else value for key, value in filled.items()}


def slot_fillings(template: dict) -> list[dict]:
    """Every filling of the slots a tool's arguments use, in a fixed order."""
    names = sorted({name for value in template.values() for name in SLOTS if "{" + name + "}" in value})
    return [dict(zip(names, values)) for values in itertools.product(*(SLOTS[n] for n in names))]


def split_calls(rng: random.Random) -> tuple[list, list]:
    """(intent, slots) pairs for training and for evaluation: HELD_OUT calls of each tool held out."""
    train, held_out = [], []
    for intent in INTENTS:
        fillings = slot_fillings(intent[2])
        rng.shuffle(fillings)
        held_out += [(intent, f) for f in fillings[:HELD_OUT]]
        train += [(intent, f) for f in fillings[HELD_OUT:]]
    return train, held_out


def make_row(rng: random.Random, intent: tuple, slots: dict) -> dict:
    requests, tool, template, reading = intent
    offered = [TOOLS[tool], TOOLS[rng.choice([other for other in TOOLS if other != tool])]]
    rng.shuffle(offered)
    call = {"type": "function", "function": {"name": tool, "arguments": arguments(template, slots, tool)}}
    messages = [
        {"role": "user", "content": rng.choice(requests).format(**slots)},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    if reading is not None and rng.random() < 0.5:
        key, answer = reading
        value = rng.choice(VALUES[key])
        messages.append({"role": "tool", "name": tool, "content": json.dumps({key: value})})
        messages.append({"role": "assistant", "content": answer.format(**slots, value=value)})
    return {"messages": messages, "tools": offered}


def write_tool_dataset(
    out_dir: str | Path, n_train: int = 6000, n_eval: int = 70, seed: int = 0
) -> tuple[Path, Path]:
    """train.jsonl: training calls drawn evenly, so a tool's share follows its number of argument pairs
    (search_file 96, tail_file 48, count_lines 12, list_files and disk_usage 8: with seed 0, 58%, 28%, 6%,
    4% and 3% of the rows; a draw even over tools learned less in the example's budget, 28% exact calls
    against 70%); eval.jsonl: the ten held-out calls in turn, each asked seven times in other words."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train_calls, held_out = split_calls(rng)
    train = [make_row(rng, *rng.choice(train_calls)) for _ in range(n_train)]
    evaluation = [make_row(rng, *held_out[i % len(held_out)]) for i in range(n_eval)]
    paths = out / "train.jsonl", out / "eval.jsonl"
    for path, rows in zip(paths, (train, evaluation)):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


# What the chatml built-in writes around the schemas (data/templates.py)
PREAMBLE = (
    "<|im_start|>system\n# Tools\n\nYou may call one or more functions. Their signatures are within "
    "<tools></tools>:\n<tools>",
    "</tools>\n\nFor each call, return a JSON object with the function name and arguments within "
    "<tool_call></tool_call> tags.<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    "<|im_start|>tool\n<tool_response>\n</tool_response>",
)


def tokenizer_corpus() -> list[str]:
    """Tool schemas, calls and results as the chatml built-in writes them, so a tiny tokenizer learns their
    JSON pieces (a real model's tokenizer has seen plenty of JSON)."""
    rng, calls = random.Random(2), split_calls(random.Random(0))[0]
    texts = []
    for _ in range(1500):
        row = make_row(rng, *rng.choice(calls))
        schemas = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in row["tools"])
        turns = [
            render_calls(t["tool_calls"]) if t.get("tool_calls") else t["content"] for t in row["messages"]
        ]
        texts.append(f"{PREAMBLE[0]}\n{schemas}\n{PREAMBLE[1]}\n" + "\n".join(turns))
    return texts


if __name__ == "__main__":
    for written in write_tool_dataset(sys.argv[1] if len(sys.argv) > 1 else "data/tools"):
        print(written)
