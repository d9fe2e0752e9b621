"""Command line: `tuneforge train | generate | tiny-model`, and `tuneforge --version`.

tuneforge train examples/quickstart.yaml --set train.max_steps=50
tuneforge generate runs/quickstart --prompt "delete notes.txt"
tuneforge generate runs/quickstart --input eval.jsonl --output predictions.jsonl
tuneforge tiny-model models/tiny-llama --arch llama
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from tuneforge import __version__
from tuneforge.errors import TuneforgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune causal LMs with LoRA / QLoRA.")
console = Console()


def version_callback(value: bool) -> None:
    if value:
        console.print(f"tuneforge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """tuneforge: data -> template -> tokens -> (quantized) model + adapter -> training -> run directory."""


@app.command()
def train(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a key: --set train.max_steps=20 (repeatable)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the run's latest complete checkpoint."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Run directory (default runs/<config name>)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing run directory first."),
) -> None:
    """Fine-tune a model as the config says and write a run directory."""
    from tuneforge.config_loading import load_config
    from tuneforge.finetune import run_finetune

    with user_errors():
        config = load_config(config_path, set_)
        run_dir = output_dir or Path(config.run_dir or Path("runs") / config_path.stem)
        run_finetune(config, run_dir, resume=resume, overwrite=overwrite, console=console)


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    prompt: list[str] = typer.Option([], "--prompt", help="A user message (repeatable)."),
    input_path: Path | None = typer.Option(None, "--input", help="JSONL with a 'prompt' field per line."),
    output_path: Path | None = typer.Option(None, "--output", help="Write prompt/generation JSONL here."),
    max_new_tokens: int = typer.Option(128, help="Longest generation."),
    base_only: bool = typer.Option(
        False, "--base-only", help="Use the base model without the adapter (baseline)."
    ),
    show: int = typer.Option(0, "--show", help="With --output, also print the first N rows."),
) -> None:
    """Generate with the run's model; with --input rows that carry a 'completion', report exact match."""
    from tuneforge.generation import exact_match, load_run
    from tuneforge.generation import generate as generate_texts

    with user_errors():
        rows = [{"prompt": p} for p in prompt] + (read_prompts(input_path) if input_path else [])
        if not rows:
            raise TuneforgeError("nothing to generate: pass --prompt TEXT or --input FILE.jsonl")
        loaded = load_run(run_dir, base_only=base_only)
        texts = generate_texts(loaded, [row["prompt"] for row in rows], max_new_tokens=max_new_tokens)
        for row, text in zip(rows, texts):
            row["generation"] = text
        if output_path:
            output_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
            console.print(f"wrote {len(rows)} rows to {output_path}")
        for row in rows if not output_path else rows[:show]:
            expected = f"  [dim](expected: {row['completion']})[/]" if "completion" in row else ""
            console.print(f"[bold]>>> {row['prompt']}[/]\n{row['generation']}{expected}", highlight=False)
        references = [row["completion"] for row in rows if "completion" in row]
        if references and len(references) == len(rows):
            score = exact_match(texts, references)
            console.print(
                f"exact match: [bold]{score:.1%}[/] of {len(rows)} ({'base' if base_only else 'fine-tuned'})"
            )


@app.command()
def data(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    n: int = typer.Option(3, "--n", help="Rendered samples to show."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, as for train."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Show what training will see: samples, lengths, truncation, preflight checks, LoRA target matches."""
    from tuneforge.config_loading import load_config
    from tuneforge.data_report import data_report, show_report

    with user_errors():
        config = load_config(config_path, set_)
        if as_json:
            print(json.dumps(data_report(config)[1], indent=2))  # no rich markup: machine-readable
        else:
            show_report(console, config, n)


@app.command()
def plan(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    gpu: str | None = typer.Option(
        None, "--gpu", help="Plan for this GPU (see the list in --help), not this machine."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a key, as for train."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Memory by component, the largest batch that fits, and estimated tokens/s, before any download."""
    from dataclasses import asdict

    from tuneforge.config_loading import load_config
    from tuneforge.plan import DEVICES, make_plan
    from tuneforge.reporting import show_plan

    with user_errors():
        if gpu is not None and gpu not in DEVICES:
            raise TuneforgeError(f"--gpu {gpu!r}: choose one of {', '.join(DEVICES)}")
        result = make_plan(load_config(config_path, set_), gpu or "cpu")
        if as_json:
            print(json.dumps(asdict(result), indent=2))
        else:
            show_plan(console, result)


@app.command("tiny-model")
def tiny_model(
    out_dir: Path = typer.Argument(..., help="Folder to write the model and tokenizer to."),
    arch: str = typer.Option("llama", "--arch", help="llama | mistral | qwen2 | phi | gpt2"),
    hidden: int = typer.Option(128, help="Hidden size."),
    layers: int = typer.Option(4, help="Number of layers."),
    seed: int = typer.Option(0, help="Weight initialisation seed."),
) -> None:
    """Build a tiny random model with a freshly trained tokenizer (offline; for tests and demos)."""
    from tuneforge.tiny_model import TinySize, build_tiny_model

    with user_errors():
        path = build_tiny_model(out_dir, arch, TinySize(hidden=hidden, layers=layers), seed=seed)
        console.print(f"tiny {arch} model written to {path}")


def read_prompts(path: Path) -> list[dict]:
    from tuneforge.data_sources import read_jsonl

    if not path.is_file():
        raise TuneforgeError(f"input file not found: {path}")
    rows = read_jsonl(path)
    missing = next((i for i, row in enumerate(rows, start=1) if "prompt" not in row), None)
    if missing is not None:
        raise TuneforgeError(f"{path}: row {missing} has no 'prompt' field (each line needs one)")
    return rows


class user_errors:  # noqa: N801 - used as a context manager, reads like a statement
    """Print a TuneforgeError as one red message and exit 2; let real bugs keep their traceback."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, TuneforgeError):
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        return False


if __name__ == "__main__":
    app()
