"""Commands that prepare and run training: `tuneforge train | data | plan`."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import typer

from tuneforge.cli.app import SHOW_TRACEBACKS, app, console, user_errors


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
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Processes on this machine (one per GPU; DDP over gloo on CPUs), via torchrun.",
    ),
    allow_base_change: bool = typer.Option(
        False,
        "--allow-base-change",
        help="With --resume: go on although the base model changed since the run started (a warning says "
        "what changed).",
    ),
) -> None:
    """Fine-tune a model as the config says and write a run directory."""
    from tuneforge.config.loading import load_config
    from tuneforge.run.directory import run_dir_for
    from tuneforge.train.methods import check_method
    from tuneforge.train.run import run_finetune

    with user_errors():
        config = load_config(config_path, set_)  # a bad config fails here, before any process starts
        check_method(config)
        run_dir = run_dir_for(output_dir, config.run_dir, config_path.stem)
        sets = [part for value in set_ for part in ("--set", value)]
        if nproc > 1:
            from tuneforge.cli.launch import launch_training

            flags = [*(["--resume"] if resume else []), *(["--overwrite"] if overwrite else [])]
            flags += ["--allow-base-change"] if allow_base_change else []
            argv = [str(config_path), *sets, "--output-dir", str(run_dir), *flags]
            launch_training(nproc, argv, debug=SHOW_TRACEBACKS["on"])
            return
        result = run_finetune(
            config,
            run_dir,
            resume=resume,
            overwrite=overwrite,
            console=console,
            allow_base_change=allow_base_change,
        )
        if result.interrupted:
            command = ["tuneforge", "train", str(config_path), *sets, "--output-dir", str(run_dir)]
            console.print(interrupted_advice(result, command), highlight=False, soft_wrap=True)


def interrupted_advice(result, command: list[str]) -> str:
    """The command that goes on from an interrupted run: --resume from its checkpoint, or --overwrite
    when nothing was trained yet; with --nproc as it was started."""
    if os.environ.get("LOCAL_WORLD_SIZE", "1") == os.environ.get("WORLD_SIZE", "1") != "1":
        command = [*command, "--nproc", os.environ["WORLD_SIZE"]]  # one machine: as --nproc started it
    if result.global_step == 0:
        advice = f"nothing was trained yet. Start again with:\n  {shlex.join([*command, '--overwrite'])}"
    else:
        advice = f"a checkpoint holds the progress. Resume with:\n  {shlex.join([*command, '--resume'])}"
    return f"[bold yellow]interrupted[/] ({result.interrupted}) at step {result.global_step}; {advice}"


@app.command()
def data(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    n: int = typer.Option(3, "--n", help="Rendered samples to show."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, as for train."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Show what training will see: samples, lengths, truncation, preflight checks, LoRA target matches."""
    from tuneforge.config.loading import load_config
    from tuneforge.train.preview import data_report, show_report

    with user_errors():
        config = load_config(config_path, set_)
        if as_json:
            report = data_report(config)[1]
            print(json.dumps(report, indent=2))  # no rich markup: machine-readable
        else:
            report = show_report(console, config, n)
        failures = [c["check"] for c in report["preflight"] if not c["passed"] and c["severity"] == "error"]
        if failures:  # as `tuneforge train` would stop here, so does a script that checks the exit code
            if not as_json:
                console.print(f"[bold red]preflight failed[/]: {', '.join(failures)}")
            raise typer.Exit(1)


@app.command()
def plan(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    gpu: str | None = typer.Option(
        None, "--gpu", help="Plan for this GPU (see the list in --help), not this machine."
    ),
    gpus: int = typer.Option(
        1, "--gpus", min=1, help="Devices sharing the run: memory per device, for distributed.strategy."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a key, as for train."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Memory by component, the largest batch that fits, and estimated tokens/s, without downloading
    weights. With train.max_length: auto the data is tokenized first to resolve it."""
    from dataclasses import asdict

    from tuneforge.config.loading import load_config
    from tuneforge.model.report import show_plan
    from tuneforge.train.planning import plan_run

    with user_errors():
        config = load_config(config_path, set_)
        result = plan_run(config, gpu, gpus, notice=None if as_json else console.print)
        if as_json:
            print(json.dumps(asdict(result), indent=2))
        else:
            show_plan(console, result)
