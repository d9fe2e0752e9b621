"""Batched generation from a loaded run, for `tuneforge generate` and `tuneforge eval`, through the run's
engine (`tuneforge.infer.engine`, the backend its `serve.backend` names).

Prompts are built by the data stage's encoder (`ChatEncoder.prompt_ids`), the same code that built the
training samples; answers are decoded without special tokens and stripped. Greedy by default; batched
greedy output equals one-at-a-time output (tested, and compared in bench/generate.py). An answer with a
reasoning trace or tool calls (data/tool_format.py) is written as its text and calls (`generation`, what
exact match compares), with `tool_calls` and `reasoning_content` beside it.

    texts = generate(loaded, [[{"role": "user", "content": "count the lines in notes.txt"}]])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from tuneforge.data.shapes import Message
from tuneforge.data.tool_format import Answer, split_answer
from tuneforge.errors import TuneforgeError
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import engine_for
from tuneforge.infer.inputs import plain_prompt, prompts_from_file
from tuneforge.infer.load import LoadedRun, load_run
from tuneforge.progress import Phase
from tuneforge.run.files import check_writable, write_atomically

Score = Callable[[Sequence[str], Sequence[Sequence[str]]], float]


def generate(
    loaded: LoadedRun,
    conversations: list[list[Message]],
    decoding: Decoding = Decoding(),
    console: Console | None = None,
    *,
    batch_size: int = 8,
) -> list[str]:
    """The assistant's next turn for each conversation."""
    prompts = [loaded.encoder.prompt_ids(messages) for messages in conversations]
    return texts_after(loaded, prompts, decoding, console, batch_size)


def generate_answers(
    loaded: LoadedRun,
    conversations: list[list[Message]],
    decoding: Decoding = Decoding(),
    console: Console | None = None,
    *,
    batch_size: int = 8,
) -> list[Answer]:
    """The next turn of each conversation taken apart into text, calls and trace (data/tool_format.py);
    where a prompt opened the trace itself (DeepSeek-R1's template), the answer starts inside it."""
    prompts = [loaded.encoder.prompt_ids(messages) for messages in conversations]
    texts = texts_after(loaded, prompts, decoding, console, batch_size)
    return [split_answer(t, opened=loaded.encoder.opens_trace(p)) for t, p in zip(texts, prompts)]


def texts_after(
    loaded: LoadedRun, prompts: list[list[int]], decoding: Decoding, console: Console | None, batch_size: int
) -> list[str]:
    with Phase(console, "generating", total=len(prompts)) as phase:
        outputs = engine_for(loaded).generate(
            prompts, decoding=decoding, batch_size=batch_size, on_batch=phase.advance
        )
    return [loaded.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in outputs]


def output_row(row: dict, answer: Answer) -> dict:
    """The input row with the generation, and its calls and trace when it has them."""
    extras = {"tool_calls": answer.calls} if answer.calls else {}
    extras |= {"reasoning_content": answer.reasoning} if answer.reasoning else {}
    return {**row, "generation": answer.scored, **extras}


def generate_rows(
    run_dir: Path,
    *,
    prompts: list[str],
    input_path: Path | None,
    output_path: Path | None,
    decoding: Decoding,
    max_new_tokens: int | None,
    batch_size: int,
    base_only: bool,
    show: int | None,
    trust_remote_code: bool,
    console: Console,
    score: Score,
    allow_base_change: bool = False,
) -> None:
    """`tuneforge generate`: prompts and input rows through the run's model, written and shown; rows that
    hold their answer are scored with `score` (the eval stage's exact match, which this stage sits below)."""
    if not prompts and not input_path:
        raise TuneforgeError("nothing to generate: pass --prompt TEXT or --input FILE")
    if output_path:
        check_writable(output_path)  # before the work, not after it
    loaded = load_run(
        run_dir, base_only=base_only, trust_remote_code=trust_remote_code, allow_base_change=allow_base_change
    )
    # unset: as long as the run's own evaluation lets answers be
    decoding = replace(decoding, max_new_tokens=max_new_tokens or loaded.config.eval.max_new_tokens)
    data = loaded.config.data
    rows = [plain_prompt(p, data) for p in prompts]
    rows += prompts_from_file(input_path, data, loaded.data_format) if input_path else []
    conversations = [row.messages for row in rows]
    answers = generate_answers(loaded, conversations, decoding, console, batch_size=batch_size)
    texts = [answer.scored for answer in answers]
    if output_path:
        lines = [json.dumps(output_row(row.row, a), default=str) for row, a in zip(rows, answers)]
        write_atomically(output_path, "".join(line + "\n" for line in lines))
        console.print(f"wrote {len(rows)} rows to {output_path}")
    shown = show if show is not None else (0 if output_path else len(rows))
    for row, text in list(zip(rows, texts))[:shown]:
        expected = f"  [dim](expected: {row.reference})[/]" if row.reference is not None else ""
        console.print(f"[bold]>>> {row.messages[-1]['content']}[/]\n{text}{expected}", highlight=False)
    references = [row.reference for row in rows]
    if all(reference is not None for reference in references):
        exact = score(texts, [[r] for r in references])
        console.print(
            f"exact match: [bold]{exact:.1f}%[/] of {len(rows)} ({'base' if base_only else 'fine-tuned'})"
        )
