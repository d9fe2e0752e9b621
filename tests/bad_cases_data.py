"""Bad inputs for the table in test_bad_inputs.py: data (issue 21). Same shape as bad_input_cases.CASES:
name -> (builder(World) -> CLI arguments, texts the message must hold)."""

from __future__ import annotations

import json

from bad_input_cases import World


def jsonl(w: World, name: str, *rows: dict) -> str:
    return w.config(data=w.file(name, "".join(json.dumps(row) + "\n" for row in rows)))


def chat(*turns: tuple[str, object]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


IMAGE = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "a.png"}}]


def uneven_parallel_files(w: World) -> list[str]:
    prompts = w.file("nl.txt", "list files\ncount lines\nshow disk usage\n")
    completions = w.file("cmd.txt", "ls\nwc -l\n")
    return w.train(w.config(data=prompts), "--set", f"data.completion_path={completions}")


CASES: dict = {
    "content part that is an image": (
        lambda w: w.train(jsonl(w, "img.jsonl", chat(("user", IMAGE), ("assistant", "a cat")))),
        ['img.jsonl row 0, turn 0, content part 1 is "image_url"', "only text parts"],
    ),
    "struct cell in the prompt column": (
        lambda w: w.train(jsonl(w, "st.jsonl", {"prompt": {"text": "hi", "lang": "en"}, "completion": "ok"})),
        ["st.jsonl row 0, column 'prompt' holds a struct", "'text' field"],
    ),
    "null message content": (
        lambda w: w.train(jsonl(w, "null.jsonl", chat(("user", "hi"), ("assistant", None)))),
        ["null.jsonl row 0, turn 1: content is null"],
    ),
    "Python dict reprs instead of JSON": (
        lambda w: w.train(w.config(data=w.file("py.jsonl", "{'prompt': 'a', 'completion': None}\n"))),
        ["py.jsonl:1: invalid JSON", "looks like Python dict reprs (str(dict)), not JSON", "json.dumps"],
    ),
    "a JSON key written twice": (
        lambda w: w.train(
            w.config(data=w.file("dup.jsonl", '{"prompt": "a", "prompt": "b", "completion": "c"}\n'))
        ),
        ["dup.jsonl:1: key 'prompt' is written twice"],
    ),
    "a lone surrogate in a JSON string": (
        lambda w: w.train(w.config(data=w.file("sur.jsonl", '{"prompt": "a", "completion": "b\\udc00"}\n'))),
        ["sur.jsonl:1: column 'completion' holds a lone surrogate (\\udc00)"],
    ),
    "parallel files with different line counts": (
        uneven_parallel_files,
        ["nl.txt has 3 lines but", "cmd.txt has 2"],
    ),
}
