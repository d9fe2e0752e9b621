"""`tuneforge export`: a finished run as files other tools load; the stage is tuneforge.export.command.

tuneforge export runs/quickstart --out exports/quickstart --format gguf --push-to-hub me/quickstart
"""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app, console, user_errors
from tuneforge.export.formats import FORMATS
from tuneforge.export.options import DEFAULT_FORMAT, ExportOptions

FORMAT_HELP = ", ".join(f"{name} ({fmt.help})" for name, fmt in FORMATS.items()) + "."


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    out: Path = typer.Option(..., "--out", help="The folder to create (written whole, or not at all)."),
    fmt: str = typer.Option(DEFAULT_FORMAT, "--format", help=FORMAT_HELP),
    dtype: str = typer.Option("auto", help="hf weights: auto (the run's), float32, bfloat16 or float16."),
    quant: str = typer.Option(
        "f16", help="GGUF type: f32, f16, bf16, q8_0 (or q4_k_m etc. with llama-quantize)."
    ),
    merge_base: str = typer.Option(
        "unquantized",
        "--merge-base",
        help="Base trained in 4/8 bits: merge into the original weights (unquantized) or the dequantized ones.",
    ),
    data_path: Path | None = typer.Option(
        None, "--data", help="Check on these rows instead of the eval split."
    ),
    allow_mismatch: bool = typer.Option(
        False, "--allow-mismatch", help="Keep an export outside the check's tolerance."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in --out."),
    license_id: str | None = typer.Option(
        None, "--license", help="License id for the model card (default: the base's)."
    ),
    push_to_hub: str | None = typer.Option(
        None, "--push-to-hub", help="Also upload to this hub repo (USER/NAME)."
    ),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repo private."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow the model code a run's config asks to run."
    ),
    allow_base_change: bool = typer.Option(
        False,
        "--allow-base-change",
        help="Use the run although its base model changed since it was trained (a warning says what changed).",
    ),
) -> None:
    """Merge the adapter into its base and write it in a --format; every export is checked against the
    adapter-on-base model (export_check.json) and described by a model card (README.md)."""
    from tuneforge.export.command import export_command  # imports torch: only when the command runs

    with user_errors():
        options = ExportOptions(
            format=fmt,
            dtype=dtype,
            quant=quant,
            merge_base=merge_base,
            data_file=data_path,
            allow_mismatch=allow_mismatch,
            overwrite=overwrite,
            license=license_id,
            trust_remote_code=trust_remote_code,
            allow_base_change=allow_base_change,
        )
        export_command(run_dir, out, options, console, hub_repo=push_to_hub, private=private)
