"""Render the CLI reference (every command, its arguments and options, from the typer app itself) as
Markdown for the docs; a test fails when the committed page is stale.

python -m tuneforge.cli.reference                                  # print it
python -m tuneforge.cli.reference --write docs/reference/cli.md    # refresh the page
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import typer

from tuneforge.cli import app

HEADER = "# CLI reference\n\nGenerated from the CLI itself (`python -m tuneforge.cli.reference --write docs/reference/cli.md`).\n"


def option_row(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        name = f"`{param.human_readable_name}`"
    else:
        name = ", ".join(f"`{o}`" for o in param.opts + param.secondary_opts)
    help_text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    default = param.default
    shown = "" if default in (None, (), [], False) or callable(default) else f"`{default}`"
    return f"| {name} | {help_text} | {shown} |"


def command_section(name: str, command: click.Command) -> str:
    lines = [f"## `tuneforge {name}`", "", (command.help or "").strip(), ""]
    params = [p for p in command.params if p.name != "help"]
    if params:
        lines += ["| argument / option | what it does | default |", "|---|---|---|"]
        lines += [option_row(p) for p in params]
    return "\n".join(lines) + "\n"


def render() -> str:
    group = typer.main.get_command(app)
    sections = [command_section(name, group.commands[name]) for name in sorted(group.commands)]
    return HEADER + "\n" + "\n".join(sections)


if __name__ == "__main__":
    text = render()
    if sys.argv[1:2] == ["--write"]:
        Path(sys.argv[2]).write_text(text)
    else:
        print(text, end="")
