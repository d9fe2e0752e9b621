"""`Run`: a run directory (or an hf export) as an object, and the calls that make or open one: `train`,
`load`, `preview`. Each method is the stage function its CLI command calls:

    train    -> train.run.run_finetune          (tuneforge train)
    preview  -> train.preview.data_report        (tuneforge data)
    generate -> infer.generate.generate_answers  (tuneforge generate --prompt)
    evaluate -> eval.command.evaluate_command    (tuneforge eval; figures read back from eval/results.json)
    export   -> export.exporter.export_run       (tuneforge export)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from rich import get_console
from rich.console import Console

from tuneforge.api.config import ConfigLike, as_config
from tuneforge.config.loading import load_config
from tuneforge.config.schema import RunConfig
from tuneforge.errors import TuneforgeError
from tuneforge.export.check import CheckResult
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.load import EXPORT_CONFIG, LoadedRun, is_hf_export, load_run
from tuneforge.run.cpu import cpu_share
from tuneforge.run.directory import RunDir, run_dir_for
from tuneforge.run.manifest import read_manifest
from tuneforge.run.metrics import read_metrics
from tuneforge.run.plots import plot_loss


@dataclass(frozen=True)
class Check:
    """One preflight check, as `tuneforge data` reports it."""

    check: str
    passed: bool
    severity: str  # error | warn
    finding: str


@dataclass
class DataPreview:
    """What training will see (`tuneforge data --json`) and its preflight checks."""

    report: dict
    preflight: list[Check]

    @property
    def failed(self) -> list[Check]:
        """The checks that stop a run."""
        return [c for c in self.preflight if not c.passed and c.severity == "error"]


@dataclass
class Evaluation:
    """What `tuneforge eval` wrote: the tuned (and base) figures and the report's path."""

    figures: dict[str, float]
    base: dict[str, float] | None
    report: Path
    results: dict = field(repr=False, default_factory=dict)


class Picture:
    """A PNG that Jupyter shows inline; `.path` is the file."""

    def __init__(self, path: Path):
        self.path = path

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()

    def __repr__(self) -> str:
        return f"Picture({str(self.path)!r})"


def console() -> Console:
    """rich's one console (as the export stage's progress uses): in a Jupyter cell it renders as HTML, on a
    terminal as text. A second Console printing under the first one's live progress nests their output
    without end in Jupyter."""
    return get_console()


def numbers(found: dict | None) -> dict[str, float] | None:
    if found is None:
        return None
    return {k: v for k, v in found.items() if isinstance(v, (int, float)) and k != "step"}


class Run:
    """A run directory (or an hf export): its status, config, metrics and plots, and what can be done with it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.is_export = is_hf_export(self.path)  # an hf export generates; it has no metrics or evaluation
        if not self.is_export and not RunDir(self.path).config.is_file():
            raise TuneforgeError(f"{self.path} is neither a tuneforge run nor an hf export (no config.yaml)")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        return "export" if self.is_export else RunDir(self.path).status()

    @property
    def config(self) -> RunConfig:
        return load_config(self.path / EXPORT_CONFIG if self.is_export else RunDir(self.path).config)

    @property
    def manifest(self) -> dict:
        return read_manifest(RunDir(self.path).manifest)

    @property
    def metrics(self) -> pd.DataFrame:
        """Every line of metrics.jsonl: step, loss, eval_loss, learning rate, ... (NaN where a line lacks one)."""
        return pd.DataFrame(read_metrics(RunDir(self.path).metrics))

    def plot(self) -> Picture:
        """The loss curve as it stands (plots/loss.png, redrawn from metrics.jsonl)."""
        run = RunDir(self.path)
        config = self.config
        title = f"{config.model.name_or_path} · {config.lora.method} · {config.train.method}"
        return Picture(plot_loss(run.metrics, run.loss_plot, title=title))

    def preview(self) -> DataPreview:
        return preview(self.config)

    @cached_property
    def _loaded(self) -> LoadedRun:
        return load_run(self.path)

    def generate(
        self, prompts: str | list[str], *, max_new_tokens: int | None = None, batch_size: int = 8
    ) -> str | list[str]:
        """Greedy answers to user messages, prompted as training prompted (template, system prompt)."""
        from tuneforge.infer.generate import generate_answers
        from tuneforge.infer.inputs import plain_prompt

        loaded = self._loaded
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        decoding = Decoding(max_new_tokens=max_new_tokens or loaded.config.eval.max_new_tokens)
        conversations = [plain_prompt(text, loaded.config.data).messages for text in texts]
        with cpu_share().busy():
            answers = generate_answers(loaded, conversations, decoding, batch_size=batch_size)
        found = [answer.scored for answer in answers]
        return found[0] if isinstance(prompts, str) else found

    def evaluate(
        self,
        *,
        compare_base: bool = True,
        checkpoints: bool = False,
        data: str | Path | None = None,
        metrics: list[str] | None = None,
        overrides: list[str] | None = None,
    ) -> Evaluation:
        """Held-out loss and generation metrics, base vs tuned; the report in RUN/eval/ (`tuneforge eval`)."""
        from tuneforge.eval.command import evaluate_command

        evaluate_command(
            self.path, data_file=Path(data) if data else None, metrics=metrics or [], compare_base=compare_base,
            checkpoints=checkpoints, as_json=False, overrides=overrides or [], lm_eval=None,
            lm_eval_include=None, lm_eval_limit=None, trust_remote_code=False, console=console(),
        )  # fmt: skip
        folder = RunDir(self.path).evaluation
        results = json.loads((folder / "results.json").read_text())
        return Evaluation(
            numbers(results["tuned"]), numbers(results.get("base")), folder / "report.md", results
        )

    def export(
        self, out: str | Path, *, format: str = "hf", overwrite: bool = False, **options: Any
    ) -> CheckResult:
        """Merge and write the run in a format, checked against adapter-on-base (`tuneforge export`); options
        as ExportOptions takes them (dtype, quant, merge_base, allow_mismatch, license)."""
        from tuneforge.export.exporter import export_run
        from tuneforge.export.options import ExportOptions

        settings = ExportOptions(format=format, overwrite=overwrite, **options)
        return export_run(
            self.path, Path(out), settings, notice=lambda text: console().print(text, highlight=False)
        )


def preview(config: ConfigLike, **overrides: Any) -> DataPreview:
    """`tuneforge data` as an object: the report and its preflight checks (tokenizer only, no weights)."""
    from tuneforge.train.preview import data_report

    report = data_report(as_config(config, **overrides))[1]
    return DataPreview(report, [Check(**c) for c in report["preflight"]])


def load(path: str | Path) -> Run:
    """A run directory or an hf export."""
    return Run(path)


def train(
    config: ConfigLike,
    *,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_base_change: bool = False,
    **overrides: Any,
) -> Run:
    """`tuneforge train`: overrides are sections (`train={"max_steps": 20}`); the run goes to output_dir, else
    config.run_dir, else runs/<the YAML's name>. Ctrl-C or a kernel interrupt: one sealed checkpoint, and
    the returned Run is `interrupted` (resume=True goes on)."""
    from tuneforge.train.methods import check_method
    from tuneforge.train.run import run_finetune

    settings = as_config(config, **overrides)
    check_method(settings)
    if output_dir is None and settings.run_dir is None and not isinstance(config, (str, Path)):
        raise TuneforgeError(
            "give output_dir= (or run_dir in the config): a config that is not a file has no name"
        )
    name = Path(config).stem if isinstance(config, (str, Path)) else ""
    run_dir = run_dir_for(output_dir, settings.run_dir, name)
    cpu_share().prepare_process()
    out = console()
    result = run_finetune(
        settings,
        run_dir,
        resume=resume,
        overwrite=overwrite,
        console=out,
        allow_base_change=allow_base_change,
    )
    if result.interrupted:
        out.print(
            f"interrupted at step {result.global_step}; train(..., resume=True) goes on from its checkpoint"
        )
    return Run(run_dir)
