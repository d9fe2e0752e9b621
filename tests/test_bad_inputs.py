"""Bad input never gives a traceback: the table in bad_input_cases.py, run through the real CLI.

Each case runs the real CLI and asserts: a non-zero exit, no traceback (the CLI handled it), a message that
names the file, line or field and the fix, and that a finished run directory beside it is byte-for-byte
unchanged (no command may touch a run it was not asked to, nor one it was asked to and then refused).
"""

from __future__ import annotations

import bad_cases_data
import bad_cases_faults
import bad_cases_runs
import bad_cases_safety
import bad_cases_serving
import pytest
from bad_input_cases import CASES as FIRST_CASES
from bad_input_cases import World, tree_digest
from conftest import quick_config, write_jsonl
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.train import run as train_run
from tuneforge.train.run import run_finetune

runner = CliRunner()

TABLES = [
    FIRST_CASES,
    *(
        m.CASES
        for m in (bad_cases_data, bad_cases_faults, bad_cases_runs, bad_cases_safety, bad_cases_serving)
    ),
]
CASES = {name: case for table in TABLES for name, case in table.items()}
assert len(CASES) == sum(map(len, TABLES)), "two tables name the same case"


@pytest.fixture(scope="module")
def world_base(tiny_models, demo_files, tmp_path_factory):
    base = tmp_path_factory.mktemp("world")
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 2, "save_steps": 2})
    run_finetune(config, base / "finished")
    return tiny_models("llama"), demo_files, base / "finished"


@pytest.fixture
def world(world_base, tmp_path):
    model, (data, eval_data), finished = world_base
    world = World(model, data, eval_data, finished, tmp_path)
    yield world
    for process in world.processes:
        process.kill()
        process.wait()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_a_clear_error_and_touches_nothing(name, world, monkeypatch):
    monkeypatch.chdir(world.tmp)
    build, expected = CASES[name]
    args = [str(a) for a in build(world)]
    # Every run directory a case can reach, its target included: a refused command changes none of them.
    runs = [world.finished, *(m.parent for m in world.tmp.rglob("manifest.json"))]
    before = {run: tree_digest(run) for run in runs}
    result = runner.invoke(app, args)
    output = result.output
    assert result.exit_code not in (0, None), output
    assert isinstance(result.exception, SystemExit), f"unhandled {result.exception!r}\n{output}"
    assert "Traceback" not in output
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    for run, digest in before.items():
        assert tree_digest(run) == digest, f"{run} was changed"


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


def test_debug_shows_the_traceback(world):
    result = runner.invoke(app, ["--debug", "train", str(world.tmp / "nope.yaml")])
    assert result.exit_code != 0 and not isinstance(result.exception, SystemExit), "--debug lets it propagate"


def test_numbers_in_prompt_rows_are_prompts_not_crashes(world):
    rows = write_jsonl(world.tmp / "n.jsonl", [{"prompt": 5}, {"prompt": "count a.txt"}])
    result = runner.invoke(
        app, ["generate", str(world.finished), "--input", str(rows), "--max-new-tokens", "2"]
    )
    assert result.exit_code == 0, result.output


def test_an_unexpected_error_is_one_message_and_exit_1(world, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something no check foresaw")

    monkeypatch.setattr(train_run, "run_finetune", broken)
    result = runner.invoke(app, ["train", world.config(), "--output-dir", str(world.tmp / "run")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "RuntimeError: something no check foresaw" in result.output and "--debug" in result.output


def test_library_noise_is_not_printed(world):
    """bitsandbytes announces, on AVX512-BF16 CPUs, an optional kernel package it cannot import, on every
    command that loads it. A fresh process, since the line comes when bitsandbytes is first imported."""
    import subprocess
    import sys

    config = world.config(name="qlora.yaml")
    command = [sys.executable, "-m", "tuneforge.cli", "train", config, "--set", "quant.mode=4bit"]
    command += ["--output-dir", str(world.tmp / "q")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "bitsandbytes" in sys.modules, "the test process imported it too: the library is installed"
    assert "gemm_4bit_forward" not in result.stdout + result.stderr
