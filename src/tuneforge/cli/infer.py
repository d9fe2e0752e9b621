"""`tuneforge generate`: a run's model on prompts or a file of rows."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app, console, user_errors

TRUST = typer.Option(False, "--trust-remote-code", help="Allow the model code a run's config asks to run.")
BASE_CHANGE = typer.Option(
    False,
    "--allow-base-change",
    help="Use the run although its base model changed since it was trained (a warning says what changed).",
)


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    prompt: list[str] = typer.Option([], "--prompt", help="A user message (repeatable)."),
    input_path: Path | None = typer.Option(
        None,
        "--input",
        help="Rows in the run's training shape (its columns, prompt_format and system prompt apply), or rows "
        "with a 'prompt' field: .jsonl, .json, .csv, .parquet.",
    ),
    output_path: Path | None = typer.Option(
        None, "--output", help="Write each row plus its generation here."
    ),
    max_new_tokens: int | None = typer.Option(
        None, min=1, help="Longest generation (default: the run's eval.max_new_tokens)."
    ),
    base_only: bool = typer.Option(
        False, "--base-only", help="Use the base model without the adapter (baseline)."
    ),
    show: int | None = typer.Option(
        None,
        "--show",
        min=0,
        help="Print the first N rows (default: all of them, or none with --output).",
    ),
    batch_size: int = typer.Option(8, help="Prompts generated together (grouped by length)."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (with --sample)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass (with --sample)."),
    trust_remote_code: bool = TRUST,
    allow_base_change: bool = BASE_CHANGE,
) -> None:
    """Generate with the run's model; with --input rows that hold their answer, report exact match."""
    from tuneforge.eval.metrics import exact_match
    from tuneforge.infer.decoding import Decoding
    from tuneforge.infer.generate import generate_rows

    # --sample has always drawn from seed 42: sampled output stays what it was.
    decoding = Decoding.switched(
        max_new_tokens=max_new_tokens or Decoding.max_new_tokens,
        do_sample=sample,
        temperature=temperature,
        top_p=top_p,
        seed=42,
    )
    with user_errors():
        generate_rows(
            run_dir,
            prompts=prompt,
            input_path=input_path,
            output_path=output_path,
            decoding=decoding,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            base_only=base_only,
            show=show,
            trust_remote_code=trust_remote_code,
            allow_base_change=allow_base_change,
            console=console,
            score=exact_match,
        )
