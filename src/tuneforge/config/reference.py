"""Render the config reference (every section, key, type, default and description) as Markdown.

python -m tuneforge.config.reference                   # print it
python -m tuneforge.config.reference --write docs/reference/config.md  # refresh the page between its markers
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tuneforge.config.schema import RunConfig


def type_name(annotation) -> str:
    text = str(annotation).replace("typing.", "").replace("tuneforge.config.schema.", "")
    return text.replace("<class '", "").replace("'>", "").replace("|", "\\|")


def default_text(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory else field.default
    return "" if isinstance(value, BaseModel) else f"`{value!r}`".replace("|", "\\|")


def section_rows(name: str, model: type[BaseModel]) -> list[str]:
    rows = []
    for key, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += section_rows(f"{name}.{key}", annotation)
            continue
        item = (get_args(annotation) or [None])[0]
        if get_origin(annotation) is list and isinstance(item, type) and issubclass(item, BaseModel):
            rows.append(f"| `{name}.{key}` | list | `[]` | {field.description or ''} Each item: |")
            rows += section_rows(f"{name}.{key}[]", item)
            continue
        rows.append(
            f"| `{name}.{key}` | {type_name(annotation)} | {default_text(field)} | {field.description or ''} |"
        )
    return rows


def render() -> str:
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in RunConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += section_rows(name, annotation)
        else:
            lines.append(
                f"| `{name}` | {type_name(annotation)} | {default_text(field)} | {field.description or ''} |"
            )
    return "\n".join(lines) + "\n"


START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def replace_between_markers(text: str, table: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + START + table + END + tail


def section_in(text: str) -> str:
    return text.partition(START)[2].partition(END)[0]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        readme = Path(sys.argv[2])
        readme.write_text(replace_between_markers(readme.read_text(), render()))
    else:
        print(render(), end="")
