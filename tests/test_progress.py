"""Long phases print progress lines when the output is not a terminal (a log file, CI, nohup), at the
set interval even while one step takes longer than it, and nothing for a phase shorter than it."""

from __future__ import annotations

import io
import re
import shutil
import time

import pytest
from conftest import quick_config
from rich.console import Console
from transformers import TrainerCallback
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.eval.evaluate import evaluate_run
from tuneforge.infer.engines.transformers import TransformersEngine
from tuneforge.progress import EVERY_SECONDS, Phase
from tuneforge.train.run import run_finetune

INTERVAL = 0.2


class TimedLines(io.StringIO):
    """A non-terminal file that remembers when each line was written."""

    def __init__(self):
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.lines += [(time.monotonic(), line) for line in text.splitlines() if line]
        return super().write(text)


@pytest.fixture
def slowed_generation(monkeypatch):
    """Each generated batch takes a second: longer than the interval, as a slow model's batches are."""
    original = TransformersEngine.generate

    def slowed(self, prompts, *args, on_batch=None, **kwargs):
        def slow(rows: int) -> None:
            time.sleep(1.0)
            if on_batch is not None:
                on_batch(rows)

        return original(self, prompts, *args, on_batch=slow, **kwargs)

    monkeypatch.setattr(TransformersEngine, "generate", slowed)
    monkeypatch.setenv(EVERY_SECONDS, str(INTERVAL))


@pytest.fixture
def run_copy(two_runs, tmp_path):
    return shutil.copytree(two_runs[0], tmp_path / "run")


def test_a_non_terminal_eval_prints_progress_at_the_interval_through_slow_batches(
    run_copy, slowed_generation
):
    out = TimedLines()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    evaluate_run(run_copy, console=console, overrides=["eval.max_rows=8", "eval.batch_size=4"])
    progress = [(at, line) for at, line in out.lines if line.startswith("generating: ")]
    assert len(progress) >= 6, out.getvalue()  # two batches of a second each, a line every 0.2 s
    assert re.fullmatch(r"generating: 0/8 rows \(0%\), 0\.00 rows/s, \d+s elapsed", progress[0][1])
    assert progress[-1][1].startswith("generating: done, 8/8 rows (100%)"), progress[-1]
    gaps = [later - earlier for (earlier, _), (later, _) in zip(progress, progress[1:])]
    assert max(gaps) < INTERVAL * 2.5, gaps  # during each one-second batch too
    assert any("4/8 rows (50%)" in line and "ETA" in line for _, line in progress)


def test_the_cli_eval_shows_the_lines_in_its_captured_output(run_copy, slowed_generation):
    result = CliRunner().invoke(
        app, ["eval", str(run_copy), "--set", "eval.max_rows=4", "--set", "eval.batch_size=4"]
    )
    assert result.exit_code == 0, result.output
    assert "generating: 0/4 rows (0%)" in result.output and "generating: done, 4/4 rows" in result.output


def test_a_phase_shorter_than_the_interval_prints_nothing(monkeypatch):
    monkeypatch.setenv(EVERY_SECONDS, "5")
    out = io.StringIO()
    with Phase(Console(file=out), "tokenizing", total=3) as phase:
        phase.advance(3)
    assert out.getvalue() == ""


def test_training_to_a_log_prints_steps_and_loss(tiny_models, demo_files, tmp_path, monkeypatch):
    monkeypatch.setenv(EVERY_SECONDS, "0.05")
    out = TimedLines()
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 6, "logging_steps": 1})
    run_finetune(config, tmp_path / "run", console=Console(file=out, width=200))
    lines = [line for _, line in out.lines if line.startswith("training: ")]
    assert lines and lines[-1].startswith("training: done, 6/6 steps (100%)"), out.getvalue()
    assert any(re.search(r"steps/s, loss \d+\.\d{4}, ", line) for line in lines), lines
    time.sleep(4 * 0.05)
    assert [line for _, line in out.lines if line.startswith("training: ")] == lines, "lines went on"


class FailAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("planted failure")


def test_lines_stop_when_training_fails(tiny_models, demo_files, tmp_path, monkeypatch):
    monkeypatch.setenv(EVERY_SECONDS, "0.05")
    out = TimedLines()
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 6})
    with pytest.raises(RuntimeError, match="planted failure"):
        run_finetune(
            config, tmp_path / "run", console=Console(file=out, width=200), extra_callbacks=[FailAt()]
        )
    printed = len(out.lines)
    time.sleep(4 * 0.05)
    assert len(out.lines) == printed, out.lines[printed:]
