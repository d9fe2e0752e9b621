"""The base is pinned (issue 21): a run records a cheap fingerprint of its base, later commands refuse a base
that changed (unless --allow-base-change), a base named by a relative path is found from the run wherever
the run or the shell moved, and no pickle file is opened without model.allow_pickle."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import test_bad_inputs
import torch
from bad_cases_safety import (
    RELATIVE_BASE,
    pickle_beside_other_safetensors,
    pickled_adapter_run,
    pickled_export,
    relocated_run,
    swap_weights,
)
from safetensors.torch import load_file
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.schema import ModelConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model import fingerprint as fingerprints
from tuneforge.model.base_pin import pinned_base
from tuneforge.model.fingerprint import SAMPLE_BUDGET, differences, fingerprint, folder_fingerprint

runner = CliRunner()
# The bad-input table's world: a finished run on the tiny model, which these tests copy and change.
world_base, world = test_bad_inputs.world_base, test_bad_inputs.world


def generate(run: Path, *more: str):
    return runner.invoke(app, ["generate", str(run), "--prompt", "hi", "--max-new-tokens", "2", *more])


def test_the_manifest_records_the_base_where_it_is_and_what_it_holds(world):
    recorded = json.loads((world.finished / "manifest.json").read_text())["base_model"]
    assert recorded["path"] == str(world.model)
    assert (world.finished / recorded["relative_to_run"]).resolve() == world.model.resolve()
    assert recorded["fingerprint"] == folder_fingerprint(world.model)
    assert set(recorded["fingerprint"]["files"]) == {"model.safetensors"}


def test_swapped_weights_are_refused_and_allow_base_change_goes_through(world, monkeypatch):
    monkeypatch.chdir(world.tmp)
    run, model = relocated_run(world, world.tmp)
    swap_weights(model)
    refused = generate(run)
    assert refused.exit_code == 2, refused.output
    assert (
        f"{RELATIVE_BASE}/model.safetensors changed since {run} was trained (content differs; same size)"
        in (refused.output)
    )
    assert "--allow-base-change" in refused.output
    allowed = generate(run, "--allow-base-change")
    assert allowed.exit_code == 0, allowed.output
    assert "warning:" in allowed.output and "loading it anyway (--allow-base-change)" in allowed.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


COMMANDS = {
    "generate": lambda run: ["generate", str(run), "--prompt", "hi"],
    "eval": lambda run: ["eval", str(run)],
    "export": lambda run: ["export", str(run), "--out", str(run.parent / "exported")],
    "serve": lambda run: ["serve", str(run), "--port", str(free_port())],
    "app": lambda run: ["app", str(run), "--port", str(free_port())],
    "chat": lambda run: ["chat", str(run)],
    "train --resume": lambda run: [
        *("train", str(run / "config.yaml"), "--output-dir", str(run), "--resume"),
        *("--set", "train.max_steps=3"),
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_changed_base_unless_allowed(command, world, monkeypatch):
    monkeypatch.chdir(world.tmp)
    run, model = relocated_run(world, world.tmp)
    swap_weights(model)
    arguments = COMMANDS[command](run)
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == 2 and "changed since" in refused.output, refused.output

    def loads_now(*args, **kwargs):
        raise TuneforgeError("the base model loads now")

    # Past the check, the command stops where the base would load: the flag reached the check.
    monkeypatch.setattr("tuneforge.infer.load.load_base_model", loads_now)
    monkeypatch.setattr("tuneforge.model.build.load_base_model", loads_now)
    allowed = runner.invoke(app, [*arguments, "--allow-base-change"])
    assert "loading it anyway (--allow-base-change)" in allowed.output, allowed.output
    assert "the base model loads now" in allowed.output


def test_a_relative_base_is_found_after_runs_and_models_moved_together_and_from_elsewhere(world, monkeypatch):
    relocated_run(world, world.tmp / "before")
    (world.tmp / "before").rename(world.tmp / "after")  # the recorded absolute path is gone
    monkeypatch.chdir(world.tmp / "after")
    moved_together = generate(Path("runs/run"))
    assert moved_together.exit_code == 0, moved_together.output
    (world.tmp / "elsewhere").mkdir()
    monkeypatch.chdir(world.tmp / "elsewhere")
    from_elsewhere = generate(Path("../after/runs/run"))
    assert from_elsewhere.exit_code == 0, from_elsewhere.output
    assert "warning" not in moved_together.output + from_elsewhere.output


def test_a_base_in_the_current_folder_is_taken_only_when_it_matches(world, monkeypatch):
    run, model = relocated_run(world, world.tmp / "trained-here")
    look_alike = world.tmp / "shell" / RELATIVE_BASE  # same relative name from the shell, other weights
    shutil.copytree(model, look_alike)
    swap_weights(look_alike)
    monkeypatch.chdir(world.tmp / "shell")
    record = json.loads((run / "manifest.json").read_text())["base_model"]
    found = pinned_base(ModelConfig(name_or_path=RELATIVE_BASE), record, run, allow_change=False)
    assert Path(found.name_or_path).resolve() == model.resolve()


def test_a_run_from_before_bases_were_recorded_loads_as_written(tmp_path):
    model = ModelConfig(name_or_path=str(tmp_path / "anything"))
    assert pinned_base(model, None, tmp_path, allow_change=False) is model


def test_the_fingerprint_reads_a_bounded_sample_of_a_large_file(tmp_path, monkeypatch):
    weights = tmp_path / "model.safetensors"
    with open(weights, "wb") as f:  # sparse: 16 samples of a 1 GiB file cost no disk
        f.write((8).to_bytes(8, "little") + b'{"a": 1}')
        f.truncate(1 << 30)
    read = []

    class Counting:
        def __init__(self, path, mode):
            self.file = open(path, mode)  # noqa: SIM115 - closed by __exit__

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def seek(self, offset):
            self.file.seek(offset)

        def read(self, n):
            data = self.file.read(n)
            read.append(len(data))
            return data

    monkeypatch.setattr(fingerprints, "open", Counting, raising=False)
    found = fingerprints.file_fingerprint(weights)
    assert found["bytes"] == 1 << 30
    assert 0 < sum(read) <= SAMPLE_BUDGET + 8 + 8, "a header and a fixed sample, not the whole file"


def test_a_changed_byte_in_a_sampled_chunk_changes_the_fingerprint(tmp_path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(os.urandom(4 * SAMPLE_BUDGET))
    before = folder_fingerprint(tmp_path)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # the last chunk is always sampled
    weights.write_bytes(bytes(data))
    assert differences(before, folder_fingerprint(tmp_path)) == [("model.bin", "content differs; same size")]


@pytest.fixture
def fake_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def cache(commit: str) -> None:
        repo = tmp_path / "hub" / "models--someone--tiny"
        (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    return cache


def test_a_hub_base_is_pinned_to_the_commit_it_was_trained_on(fake_hub_cache, tmp_path):
    model = ModelConfig(name_or_path="someone/tiny")
    assert fingerprint(model)["commit"] is None  # nothing cached, offline: no failure
    fake_hub_cache("a" * 40)
    record = {"fingerprint": fingerprint(model)}
    assert pinned_base(model, record, tmp_path, allow_change=False).revision == "a" * 40
    fake_hub_cache("b" * 40)
    with pytest.raises(
        TuneforgeError, match="resolves it to commit bbbbbbbbbbbb, the run was trained on aaaa"
    ):
        pinned_base(model, record, tmp_path, allow_change=False)


@pytest.fixture
def unpickling(monkeypatch) -> list:
    """Every file torch.load opens; any library that unpickles a checkpoint goes through it."""
    opened = []
    original = torch.load

    def spy(f, *args, **kwargs):
        opened.append(str(f))
        return original(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return opened


@pytest.mark.parametrize(
    ("build", "command"),
    [
        (lambda w: w.config(model=pickle_beside_other_safetensors(w)), lambda w, x: w.train(x)),
        (pickled_adapter_run, lambda w, x: ["generate", str(x), "--prompt", "hi"]),
        (pickled_export, lambda w, x: ["generate", str(x), "--prompt", "hi"]),
    ],
    ids=["base", "adapter", "export"],
)
def test_a_pickle_is_refused_before_anything_is_unpickled(build, command, world, unpickling):
    result = runner.invoke(app, command(world, build(world)))
    assert result.exit_code == 2 and "model.allow_pickle" in result.output, result.output
    assert unpickling == [] and not (world.tmp / "unpickled").exists()


def test_allow_pickle_loads_an_adapter_saved_as_pickle(world):
    run = world.tmp / "run"
    shutil.copytree(world.finished, run)
    adapter = run / "adapter"
    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    assert generate(run).exit_code == 2, "refused without model.allow_pickle"
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("allow_pickle: false", "allow_pickle: true"))
    result = generate(run)
    assert result.exit_code == 0, result.output
