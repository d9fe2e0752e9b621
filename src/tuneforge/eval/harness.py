"""Standard benchmarks through lm-evaluation-harness (`pip install 'tuneforge[lm-eval]'`): the run's model,
base plus adapter as trained, is handed over in memory, so what is measured is what was trained.

    tuneforge eval runs/my_run --lm-eval hellaswag,arc_easy
    tuneforge eval runs/my_run --lm-eval my_task --lm-eval-include tasks/   # your own task YAML files
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.infer.load import LoadedRun


def run_lm_eval(
    loaded: LoadedRun,
    tasks: list[str],
    *,
    include: Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
) -> dict[str, dict]:
    """{task: {metric: value}} as lm-eval reports them."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise TuneforgeError(
            "--lm-eval needs lm-evaluation-harness: pip install 'tuneforge[lm-eval]'"
        ) from exc
    if include is not None and not include.is_dir():
        raise TuneforgeError(f"--lm-eval-include {include}: not a folder of task YAML files")
    manager = TaskManager(include_path=str(include)) if include else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise TuneforgeError(f"--lm-eval: unknown task {unknown[0]!r} (define it with --lm-eval-include DIR)")
    model = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
    results = simple_evaluate(model=model, tasks=tasks, task_manager=manager, limit=limit)
    return {
        task: {k: v for k, v in values.items() if isinstance(v, (int, float))}
        for task, values in results["results"].items()
    }
