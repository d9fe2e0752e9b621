"""The typer app every command registers on, the shared console, and how errors reach the user.

Command modules (`train`, `infer`, `results`, `ship`, `use`) import `app` from here; `tuneforge.cli`
imports them all, which registers their commands.
"""

from __future__ import annotations

import logging
import os
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from tuneforge.errors import TuneforgeError, os_fault
from tuneforge.run.cpu import cpu_share
from tuneforge.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune causal LMs with LoRA / QLoRA.")
console = Console()
SHOW_TRACEBACKS = {"on": False}
LOG_WIDTH = 1000


def version_callback(value: bool) -> None:
    if value:
        console.print(f"tuneforge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error."),
) -> None:
    """tuneforge: data -> template -> tokens -> (quantized) model + adapter -> training -> run directory."""
    SHOW_TRACEBACKS["on"] = debug
    # In a log rich lays tables out at 80 columns and cuts every run, model and data name to "runs/…":
    # there, lines may be as long as their content.
    console.width = None if console.is_terminal or console.is_jupyter else LOG_WIDTH
    quiet_third_party_noise()
    with user_errors():  # a bad TUNEFORGE_THREADS is the user's to fix
        cpu_share().prepare_process()  # before torch or tokenizers start their thread pools
    if rank_tag():  # under torchrun only rank 0 talks; the others report their own errors only
        console.quiet = True
        warnings.simplefilter("ignore")
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def quiet_third_party_noise() -> None:
    """Lines that tell the user nothing they can act on, printed by libraries on every command."""
    # bitsandbytes, on AVX512-BF16 CPUs: an optional kernel package it could not import.
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
        lambda record: "gemm_4bit_forward" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft calling a renamed API
    warnings.filterwarnings("ignore", message=".*clean_up_tokenization_spaces.*")
    # peft, saving a checkpoint of an adapter on a base with no config.json beside it (a GGUF base): it
    # assumes the vocabulary was not resized, which tuneforge never does.
    warnings.filterwarnings(
        "ignore", message="Could not find a config file in .* vocabulary was not modified"
    )


def rank_tag() -> str:
    """Which process failed, when several train together (torchrun sets RANK)."""
    rank = os.environ.get("RANK")
    return f" (process {rank})" if rank not in (None, "0") else ""


def errors() -> Console:
    return Console(stderr=True) if console.quiet else console


class user_errors:  # noqa: N801 - used as a context manager, reads like a statement
    """Any error becomes one red message and a non-zero exit, never a traceback (`--debug` shows it):
    2 for problems the user can fix (TuneforgeError, or a file fault such as no permission or a full disk),
    1 for anything unexpected, 130 for Ctrl-C."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or issubclass(exc_type, (typer.Exit, SystemExit)) or SHOW_TRACEBACKS["on"]:
            return False
        if issubclass(exc_type, KeyboardInterrupt):
            console.print("[bold yellow]interrupted[/]")
            raise typer.Exit(130)
        # A missed site of a file fault the user can fix (no permission, a full disk, ...) is still theirs.
        fault = exc if isinstance(exc, TuneforgeError) else os_fault(exc)
        if fault is not None:
            errors().print(
                f"[bold red]error:[/]{rank_tag()} {escape(str(fault))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2)
        errors().print(
            f"[bold red]error:[/]{rank_tag()} {exc_type.__name__}: {escape(str(exc))}\nThis was not expected: rerun with "
            "`tuneforge --debug ...` for the traceback, and report it.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
