"""`tuneforge chat RUN`: a terminal chat that streams the model's answer, keeps the conversation, and
takes commands: /reset, /system TEXT, /set temperature|top_p|max_tokens VALUE, /help, /exit."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import Engine
from tuneforge.serve.server import open_engine

HELP = "/reset forgets the conversation · /system TEXT sets the system message · /set temperature|top_p|max_tokens V · /exit"


@dataclass
class Conversation:
    system: str | None = None
    turns: list[dict] = field(default_factory=list)
    decoding: Decoding = field(default_factory=Decoding)

    def messages(self, user: str) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *self.turns, {"role": "user", "content": user}]


def command(line: str, conversation: Conversation, console: Console, cap: int) -> bool:
    """Apply a /command; returns False when the chat should end."""
    name, _, argument = line[1:].partition(" ")
    if name in ("exit", "quit"):
        return False
    if name == "reset":
        conversation.turns.clear()
        console.print("[dim](conversation cleared)[/]")
    elif name == "system":
        conversation.system = argument.strip() or None
        conversation.turns.clear()
        console.print(
            f"[dim](system message {'set' if conversation.system else 'removed'}; conversation cleared)[/]"
        )
    elif name == "set":
        set_decoding(argument, conversation, console, cap)
    else:
        console.print(f"[dim]{HELP}[/]", highlight=False)
    return True


def set_decoding(argument: str, conversation: Conversation, console: Console, cap: int) -> None:
    key, _, value = argument.strip().partition(" ")
    fields = {
        "temperature": ("temperature", float),
        "top_p": ("top_p", float),
        "max_tokens": ("max_new_tokens", int),
    }
    if key not in fields:
        console.print(f"[red]/set {key}: choose temperature, top_p or max_tokens[/]")
        return
    name, kind = fields[key]
    try:
        conversation.decoding = replace(conversation.decoding, **{name: kind(value)})
    except ValueError:
        console.print(f"[red]/set {key} {value!r}: not a number[/]")
        return
    console.print(f"[dim]({key} = {value})[/]")


def reply(engine: Engine, name: str, conversation: Conversation, user: str, console: Console) -> str:
    served = engine.served[name]
    ids = engine.chat_ids(name, conversation.messages(user))
    budget = conversation.decoding.max_new_tokens
    while served.context and len(ids) + budget > served.context and conversation.turns:
        conversation.turns = conversation.turns[2:]  # the oldest exchange goes first
        console.print("[dim](oldest turn dropped to fit the model's context)[/]")
        ids = engine.chat_ids(name, conversation.messages(user))
    events: queue.Queue = queue.Queue()
    engine.submit(name, ids, conversation.decoding, events.put)
    text = ""
    console.print("[bold green]model>[/] ", end="")
    while True:
        event = events.get()
        console.print(event.delta, end="", highlight=False, markup=False)
        text += event.delta
        if event.finish_reason is not None:
            break
    console.print()
    if event.finish_reason in ("error", "timeout"):
        console.print(f"[red]({event.error or 'timed out'}; this turn is not kept)[/]", highlight=False)
        return text
    conversation.turns += [{"role": "user", "content": user}, {"role": "assistant", "content": text}]
    return text


def chat_loop(engine: Engine, name: str, console: Console, read: Callable[[str], str] = input) -> None:
    conversation = Conversation(decoding=Decoding(max_new_tokens=engine.limits.max_new_tokens))
    console.print(f"[bold]{name}[/] · {HELP}", highlight=False)
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            break
        if not line:
            continue
        if line.startswith("/"):
            if not command(line, conversation, console, engine.limits.max_new_tokens):
                break
            continue
        reply(engine, name, conversation, line, console)


def run_chat(
    path: Path,
    overrides: list[str],
    trust_remote_code: bool,
    console: Console,
    allow_base_change: bool = False,
) -> None:
    """`tuneforge chat`: one run or export in the terminal until /exit or end of input."""
    engine = open_engine([path], overrides, trust_remote_code, allow_base_change)
    chat_loop(engine, path.resolve().name, console)
