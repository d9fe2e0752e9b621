"""`tuneforge eval RUN_DIR`: did fine-tuning help on the held-out rows, by how much, and where it peaked.

The tuned model (base + adapter), and with --compare-base the base model on the same prompts with the same
decoding, and with --checkpoints every sealed checkpoint, are each scored by held-out answer loss and by
generation metrics. Results go to RUN_DIR/eval/ (results.json, predictions.jsonl and the report).

    evaluation = evaluate_run(Path("runs/quickstart"), compare_base=True)
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from tuneforge.config.loading import with_overrides
from tuneforge.config.schema import EvalConfig
from tuneforge.errors import TuneforgeError
from tuneforge.eval.heldout import answer_loss, heldout_rows
from tuneforge.eval.metrics import compute_metrics, default_metrics
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.generate import generate_answers
from tuneforge.infer.load import LoadedRun, load_run
from tuneforge.model.build import load_trained
from tuneforge.run.checkpoints import checkpoint_dirs, problem, step_of
from tuneforge.run.directory import RunDir
from tuneforge.run.files import write_atomically
from tuneforge.run.manifest import now, read_manifest
from tuneforge.version import __version__


@dataclass
class Scores:
    name: str  # tuned, base, or a checkpoint's folder name
    step: int | None
    loss: dict[str, float]
    metrics: dict[str, float]
    predictions: list[str] = field(repr=False)


@dataclass
class Evaluation:
    run_dir: str
    rows: int
    metric_names: list[str]
    decoding: dict
    tuned: Scores
    base: Scores | None = None
    checkpoints: list[Scores] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list, repr=False)
    references: list[str] = field(default_factory=list, repr=False)
    benchmarks: dict[str, dict] = field(default_factory=dict)  # lm-evaluation-harness, when asked for
    about: dict[str, str] = field(default_factory=dict)  # what produced these figures: the report's header

    @property
    def main_metric(self) -> str | None:
        return self.metric_names[0] if self.metric_names else None


def evaluate_run(
    run_dir: Path,
    *,
    data_file: Path | None = None,
    metrics: list[str] | None = None,
    compare_base: bool = False,
    checkpoints: bool = False,
    trust_remote_code: bool = False,
    console: Console | None = None,
    overrides: list[str] = (),
    allow_base_change: bool = False,
) -> Evaluation:
    run = RunDir(run_dir)
    consent = {"trust_remote_code": trust_remote_code, "allow_base_change": allow_base_change}
    loaded = load_run(run_dir, **consent)
    loaded.config = with_overrides(loaded.config, list(overrides), ("eval",), source="--set")
    settings = loaded.config.eval
    rows = [r for r in heldout_rows(run, loaded.config.data, loaded.data_format, data_file) if r.reference]
    rows = rows[: settings.max_rows] if settings.max_rows else rows
    if not rows:
        raise TuneforgeError("no held-out row has a reference answer to score against")
    references = [[r.reference] for r in rows]
    names = metrics or (default_metrics(references) if settings.metrics == "auto" else list(settings.metrics))
    decoding = Decoding.switched(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
    )
    max_length = int(read_manifest(run.manifest).get("max_length") or 4096)

    def score(name: str, step: int | None) -> Scores:
        if console:
            console.print(f"scoring [bold]{name}[/] on {len(rows)} held-out rows")
        loss = answer_loss(
            loaded.model, loaded.encoder, rows, max_length=max_length, batch_size=settings.batch_size,
            console=console,
        )  # fmt: skip
        answers = generate_answers(
            loaded, [r.messages for r in rows], decoding, console, batch_size=settings.batch_size
        )
        texts = [a.scored for a in answers]  # text and calls; a trace is the model's way there, not scored
        return Scores(name, step, loss, compute_metrics(names, texts, references), texts)

    final_step = read_manifest(run.manifest).get("global_step")
    evaluation = Evaluation(
        str(run.root), len(rows), names, decoding_record(settings), score("tuned", final_step),
        prompts=[r.messages[-1]["content"] for r in rows], references=[r.reference for r in rows],
        about=about(run, loaded, final_step, decoding, data_file or run.eval_split, len(rows)),
    )  # fmt: skip
    if compare_base:
        with base_model(loaded, run_dir, consent):
            evaluation.base = score("base", 0)
    if checkpoints:
        for checkpoint in [c for c in checkpoint_dirs(run.checkpoints) if problem(c) is None]:
            load_trained(loaded.model, checkpoint)
            evaluation.checkpoints.append(score(checkpoint.name, step_of(checkpoint)))
    return evaluation


def about(run: RunDir, loaded: LoadedRun, step, decoding: Decoding, rows_file: Path, rows: int) -> dict:
    """Which run, base, data, steps and decoding produced an evaluation, and when: the report's header."""
    config = loaded.config
    data = config.data.path or ", ".join(source.path for source in config.data.mix)
    return {
        "run": str(run.root),
        "base model": config.model.name_or_path,
        "method": f"{config.train.method}, {config.lora.method}",
        "training data": str(data),
        "steps trained": str(step),
        "held-out rows": f"{rows} from {rows_file}",
        "decoding": decoding.describe(),
        "evaluated": now(),
        "tuneforge": __version__,
    }


def decoding_record(settings: EvalConfig) -> dict:
    """The decoding as results.json has always recorded it: the eval section's own switches."""
    keys = ("max_new_tokens", "batch_size", "do_sample", "temperature", "top_p", "seed")
    return {key: getattr(settings, key) for key in keys}


@contextmanager
def base_model(loaded: LoadedRun, run_dir: Path, consent: dict):
    """The same model with the adapter switched off (peft), or the base loaded beside a full fine-tune."""
    if hasattr(loaded.model, "disable_adapter"):
        with loaded.model.disable_adapter():
            yield
        return
    tuned = loaded.model
    loaded.model = load_run(run_dir, base_only=True, **consent).model
    try:
        yield
    finally:
        loaded.model = tuned


def results_json(evaluation: Evaluation) -> dict:
    def scores(s: Scores | None) -> dict | None:
        return None if s is None else {"name": s.name, "step": s.step, **s.loss, **s.metrics}

    return {
        "run_dir": evaluation.run_dir,
        "rows": evaluation.rows,
        "metrics": evaluation.metric_names,
        "main_metric": evaluation.main_metric,
        "decoding": evaluation.decoding,
        "tuned": scores(evaluation.tuned),
        "base": scores(evaluation.base),
        "checkpoints": [scores(c) for c in evaluation.checkpoints],
        "benchmarks": evaluation.benchmarks,
        "about": evaluation.about,
    }


def save_results(evaluation: Evaluation, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "results.json", json.dumps(results_json(evaluation), indent=2) + "\n")
    base = evaluation.base.predictions if evaluation.base else [None] * evaluation.rows
    lines = [
        json.dumps({"prompt": p, "reference": r, "tuned": t, "base": b})
        for p, r, t, b in zip(evaluation.prompts, evaluation.references, evaluation.tuned.predictions, base)
    ]
    write_atomically(folder / "predictions.jsonl", "".join(line + "\n" for line in lines))
    return folder / "results.json"
