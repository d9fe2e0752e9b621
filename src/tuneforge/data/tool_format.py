"""Reading tool calls back out of generated text, in the formats templates write them.

Today one format: Hermes / Qwen2.5 (and tuneforge's chatml built-in), each call a JSON object
{"name": ..., "arguments": {...}} between <tool_call> and </tool_call>. The data stage uses it to check
that a rendered call parses back into the row's call (a template that writes calls some other way is not
checked); the server will use it to return `tool_calls`.

    parse_calls('<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')  # [{"name": "f", ...}]
"""

from __future__ import annotations

import json
import re

HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_calls(text: str) -> list[dict] | None:
    """The calls in `text` as [{"name", "arguments"}], or None when it holds no call in a known format.
    A block that is not a JSON object with a name comes back as {"name": None, "raw": block}."""
    blocks = HERMES.findall(text)
    if not blocks:
        return None
    calls = []
    for block in blocks:
        try:
            found = json.loads(block)
        except json.JSONDecodeError:
            found = None
        if not isinstance(found, dict) or not isinstance(found.get("name"), str):
            calls.append({"name": None, "raw": block})
            continue
        calls.append(
            {"name": found["name"], "arguments": found.get("arguments", found.get("parameters", {}))}
        )
    return calls
