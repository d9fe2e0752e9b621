"""`tuneforge eval RUN_DIR` as one stage call: score the run (`evaluate`), add lm-evaluation-harness
benchmarks when asked, save results and report into RUN_DIR/eval/, and show them or print them as JSON.
Apart from `evaluate`, since the report reads its records."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from tuneforge.config.schema import METRIC_NAMES
from tuneforge.errors import TuneforgeError
from tuneforge.eval.evaluate import evaluate_run, results_json, save_results
from tuneforge.eval.report import show_evaluation, write_report
from tuneforge.run.directory import RunDir


def evaluate_command(
    run_dir: Path,
    *,
    data_file: Path | None,
    metrics: list[str],
    compare_base: bool,
    checkpoints: bool,
    as_json: bool,
    overrides: list[str],
    lm_eval: str | None,
    lm_eval_include: Path | None,
    lm_eval_limit: int | None,
    trust_remote_code: bool,
    console: Console,
    allow_base_change: bool = False,
) -> None:
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise TuneforgeError(f"--metrics {unknown[0]!r}: choose from {', '.join(METRIC_NAMES)}")
    run = RunDir(run_dir)
    evaluation = evaluate_run(
        run_dir,
        data_file=data_file,
        metrics=metrics or None,
        compare_base=compare_base,
        checkpoints=checkpoints,
        trust_remote_code=trust_remote_code,
        allow_base_change=allow_base_change,
        console=Console(stderr=True) if as_json else console,  # stdout holds the JSON only
        overrides=overrides,
    )
    if lm_eval:
        tasks = [t.strip() for t in lm_eval.split(",") if t.strip()]
        evaluation.benchmarks = benchmarks(
            run_dir, tasks, lm_eval_include, lm_eval_limit, trust_remote_code, allow_base_change
        )
    save_results(evaluation, run.evaluation)
    written = write_report(evaluation, run.metrics, run.evaluation)
    if as_json:
        print(json.dumps(results_json(evaluation), indent=2))
        return
    show_evaluation(console, evaluation)
    console.print(f"report: {written[-1]}")


def benchmarks(
    run_dir: Path,
    tasks: list[str],
    include: Path | None,
    limit: int | None,
    trust_remote_code: bool,
    allow_base_change: bool = False,
) -> dict[str, dict]:
    """lm-eval on the tuned model freshly loaded: --checkpoints leaves the last checkpoint's weights in the
    model evaluate_run used."""
    from tuneforge.eval.harness import run_lm_eval
    from tuneforge.infer.load import load_run

    loaded = load_run(run_dir, trust_remote_code=trust_remote_code, allow_base_change=allow_base_change)
    return run_lm_eval(loaded, tasks, include=include, limit=limit)
