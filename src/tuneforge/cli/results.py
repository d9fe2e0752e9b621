"""Commands that measure and compare finished runs: `tuneforge eval | runs | compare`."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneforge.cli.app import app, console, user_errors
from tuneforge.errors import TuneforgeError


@app.command("eval")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    data_path: Path | None = typer.Option(
        None,
        "--data",
        help="Rows to score instead of the run's own eval split (the run's data mapping applies).",
    ),
    metrics: list[str] = typer.Option(
        [],
        "--metrics",
        help="Override eval.metrics: exact_match, normalized_exact_match, rouge1, rouge2, rougeL, "
        "bleu, chrf (repeatable).",
    ),
    compare_base: bool = typer.Option(
        False, "--compare-base", help="Also score the base model, same prompts."
    ),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Also score every saved checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    set_: list[str] = typer.Option([], "--set", help="Override an eval key: --set eval.max_new_tokens=64."),
    lm_eval: str | None = typer.Option(
        None, "--lm-eval", help="Also run lm-evaluation-harness tasks (comma-separated) on the tuned model."
    ),
    lm_eval_include: Path | None = typer.Option(
        None, "--lm-eval-include", help="A folder of your own task YAMLs."
    ),
    lm_eval_limit: int | None = typer.Option(None, "--lm-eval-limit", help="At most N examples per task."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow the model code a run's config asks to run."
    ),
    allow_base_change: bool = typer.Option(
        False,
        "--allow-base-change",
        help="Use the run although its base model changed since it was trained (a warning says what changed).",
    ),
) -> None:
    """Held-out loss and generation metrics of a run; base vs tuned; per checkpoint; report in RUN_DIR/eval/."""
    from tuneforge.eval.command import evaluate_command

    with user_errors():
        evaluate_command(
            run_dir,
            data_file=data_path,
            metrics=metrics,
            compare_base=compare_base,
            checkpoints=checkpoints,
            as_json=as_json,
            overrides=set_,
            lm_eval=lm_eval,
            lm_eval_include=lm_eval_include,
            lm_eval_limit=lm_eval_limit,
            trust_remote_code=trust_remote_code,
            allow_base_change=allow_base_change,
            console=console,
        )


@app.command()
def runs(folder: Path = typer.Argument(Path("runs"), help="A folder of run directories.")) -> None:
    """A table of the runs in a folder: model, data, method, steps, held-out loss, main metric, status."""
    from tuneforge.eval.runs import find_runs, show_runs

    with user_errors():
        show_runs(console, find_runs(folder))


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="A run directory."),
    run_b: Path = typer.Argument(..., help="Another run directory."),
) -> None:
    """The config keys that differ between two runs, and their held-out figures side by side."""
    from tuneforge.eval.runs import show_compare, summarize
    from tuneforge.run.directory import RunDir

    with user_errors():
        for path in (run_a, run_b):
            if RunDir(path).damage():
                raise TuneforgeError(f"{RunDir(path).damage()}; restore it from a copy to compare this run")
            if not RunDir(path).is_tuneforge_run():
                raise TuneforgeError(f"{path} is not a tuneforge run directory")
        show_compare(console, summarize(RunDir(run_a)), summarize(RunDir(run_b)))
