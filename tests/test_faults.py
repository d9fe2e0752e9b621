"""Ordinary faults of the machine's files (issue 21): a damaged tokenization cache is named and rebuilt, a
cache that cannot be stored is a notice, a full disk during training names the file, the space left and
the checkpoint that --resume continues from, and no permission is a user error naming the file.

Symlink loops and files in place of folders are in the bad-input table (bad_cases_faults.py)."""

from __future__ import annotations

import errno
import json
import os
import pathlib
from pathlib import Path

import pytest
from conftest import quick_config
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import config_to_yaml
from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data import cache
from tuneforge.data.prepare import prepare_data
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_tokenizer
from tuneforge.run.checkpoints import seal
from tuneforge.run.directory import RunDir
from tuneforge.run.space import disk_full_error
from tuneforge.train import run as train_run

runner = CliRunner()


@pytest.fixture
def prepared(tiny_models, demo_files):
    """Prepare the demo data once (filling the cache); returns a function that prepares it again and the
    notices it gave."""
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    config = DataConfig(path=str(demo_files[0]), eval_path=str(demo_files[1]), template="alpaca")

    def again():
        notices: list[str] = []
        return prepare_data(config, tokenizer, 64, notice=notices.append), notices

    return again


def only_entry() -> Path:
    (entry,) = [p for p in cache.cache_root().iterdir() if not p.name.startswith(".")]
    return entry


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_bytes(path: Path) -> None:
    """The same size, other bytes: only the checksum tells."""
    data = bytearray(path.read_bytes())
    data[-64:] = bytes(255 - b for b in data[-64:])
    path.write_bytes(bytes(data))


def break_arrow_and_checklist(entry: Path) -> None:
    """An entry whose checklist matches its broken arrow file: the load itself fails."""
    arrow = next((entry / "train").glob("*.arrow"))
    arrow.write_bytes(b"not arrow at all")
    checklist = json.loads((entry / cache.CHECKLIST).read_text())
    checklist[str(arrow.relative_to(entry))] = [arrow.stat().st_size, cache.sha256(arrow)]
    (entry / cache.CHECKLIST).write_text(json.dumps(checklist))


DAMAGE = {
    "truncated arrow file": (lambda e: truncate(next((e / "train").glob("*.arrow"))), "bytes"),
    "arrow bytes changed": (lambda e: flip_bytes(next((e / "train").glob("*.arrow"))), "checksum"),
    "stats.json not JSON": (lambda e: (e / "stats.json").write_text("{not json"), "stats.json"),
    "a file deleted": (lambda e: (e / "eval" / "state.json").unlink(), "eval/state.json is missing"),
    "checklist deleted": (lambda e: (e / cache.CHECKLIST).unlink(), "files.json is missing"),
    "load fails": (break_arrow_and_checklist, "ArrowInvalid"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_cache_entry_is_named_and_rebuilt(prepared, damage):
    first, _ = prepared()
    entry = only_entry()
    harm, said = DAMAGE[damage]
    harm(entry)

    rebuilt, notices = prepared()
    assert not rebuilt.cache_hit
    assert len(notices) == 1 and f"tokenization cache entry {entry} is damaged" in notices[0], notices
    assert said in notices[0] and "rebuilding it" in notices[0]
    assert rebuilt.train["input_ids"] == first.train["input_ids"]
    assert rebuilt.eval["input_ids"] == first.eval["input_ids"] and rebuilt.train_stats == first.train_stats

    reused, notices = prepared()
    assert reused.cache_hit and not notices, "the rebuilt entry is whole"


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "MB free at"),
        (errno.EDQUOT, "MB free at"),
        (errno.EROFS, "Set TUNEFORGE_CACHE to a folder you can write"),
    ],
)
def test_a_cache_that_cannot_be_stored_is_a_notice(prepared, monkeypatch, code, said):
    def no_room(self, path, *args, **kwargs):
        Path(path).mkdir(parents=True)
        (Path(path) / "half.arrow").write_bytes(b"x" * 100)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("datasets.Dataset.save_to_disk", no_room)
    data, notices = prepared()
    assert data.train["input_ids"] and not data.cache_hit, "the run goes on, tokenized"
    assert len(notices) == 1 and "tokenization cache was not stored" in notices[0], notices
    assert os.strerror(code) in notices[0] and said in notices[0] and "goes on without it" in notices[0]
    assert not any(cache.cache_root().iterdir()), "the half-written entry is removed"


def write_config(path: Path, config) -> str:
    path.write_text(config_to_yaml(config))
    return str(path)


def test_a_full_disk_while_writing_a_checkpoint(tmp_path, tiny_models, demo_files, monkeypatch):
    """One tiny training, two planted faults: the tokenization cache cannot be stored (the run goes on
    without it), then the disk fills while checkpoint-2 is written (the run stops; checkpoint-1 is intact
    and named, the half-written checkpoint-2 removed, the manifest says why it failed)."""
    from transformers import Trainer

    def cache_full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    save = Trainer._save_optimizer_and_scheduler

    def full_at_step_2(self, output_dir):
        if Path(output_dir).name != "checkpoint-2":
            return save(self, output_dir)
        (Path(output_dir) / "optimizer.pt").write_bytes(b"\0" * 1000)  # cut off where the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("datasets.Dataset.save_to_disk", cache_full)
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full_at_step_2)
    config = quick_config(
        tiny_models("llama"),
        demo_files[0],
        train={"max_steps": 2, "save_steps": 1, "eval_steps": 10},
        data={"eval_fraction": 0},
        log={"tensorboard": False},
    )
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", write_config(tmp_path / "c.yaml", config), "--output-dir", str(run)]
    )

    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2, result.output
    assert "tokenization cache was not stored (No space left on device)" in output
    written = run / "checkpoints" / "checkpoint-2" / "optimizer.pt"
    assert f"could not write {written}: No space left on device" in output
    assert "MB free on that disk (after removing the half-written checkpoint-2)" in output
    assert f"the last complete checkpoint, {run / 'checkpoints' / 'checkpoint-1'} (step 1)" in output
    assert "--resume" in output
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-1"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith(f"could not write {written}")


def sealed_checkpoint(root: Path, step: int) -> Path:
    checkpoint = root / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors"):
        (checkpoint / name).write_bytes(b"{}")
    seal(checkpoint)
    return checkpoint


def test_what_a_full_disk_names(tmp_path):
    """torch's writer says only that a write failed; the adapter's staging folder is half-written too; with
    no complete checkpoint the way on is --overwrite; any other error is left alone."""
    run = RunDir(tmp_path / "run")
    (run.root / ".adapter.tmp").mkdir(parents=True)
    (run.root / ".adapter.tmp" / "adapter_model.safetensors").write_bytes(b"half")
    torch_failure = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 76992 vs 76884")
    torch_failure.__context__ = RuntimeError("basic_ios::clear: iostream error")  # as torch raises it
    error = disk_full_error(run, torch_failure)
    assert isinstance(error, TuneforgeError)
    assert "adapter_model.safetensors: torch's writer failed, most often for a full disk" in str(error)
    assert "removing the half-written .adapter.tmp" in str(error) and "--overwrite" in str(error)
    assert not (run.root / ".adapter.tmp").exists()

    later = sealed_checkpoint(run.checkpoints, 4)
    error = disk_full_error(run, OSError(errno.EDQUOT, "Disk quota exceeded", str(run.manifest)))
    assert f"could not write {run.manifest}: Disk quota exceeded" in str(error) and str(later) in str(error)
    assert disk_full_error(run, RuntimeError("shapes do not match")) is None
    assert disk_full_error(run, OSError(errno.EIO, "Input/output error")) is None


@pytest.mark.parametrize(
    ("raised", "code", "said"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/srv/weights.bin"), 2, ["weights.bin", "chmod"]),
        (OSError(errno.ELOOP, "Too many levels of symbolic links", "/srv/a"), 2, ["/srv/a", "fix the link"]),
        (OSError(errno.EROFS, "Read-only file system", "/srv/out"), 2, ["/srv/out", "somewhere else"]),
        (OSError(errno.ENAMETOOLONG, "File name too long", "/x"), 2, ["/x", "shorter"]),
        (OSError(errno.EISDIR, "Is a directory", "/srv"), 2, ["/srv", "name a file"]),
        (OSError(errno.EIO, "Input/output error", "/srv/x"), 1, ["This was not expected"]),
    ],
)
def test_a_file_fault_no_check_foresaw_is_still_a_user_error(tmp_path, monkeypatch, raised, code, said):
    def broken(*args, **kwargs):
        raise raised

    monkeypatch.setattr(train_run, "run_finetune", broken)
    config = tmp_path / "c.yaml"
    config.write_text("model: {name_or_path: m}\ndata: {path: d.jsonl}\n")
    result = runner.invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == code and isinstance(result.exception, SystemExit), result.output
    for text in [raised.strerror, *said]:
        assert text in result.output


def test_a_full_disk_under_another_error_is_named(tmp_path, monkeypatch):
    """A library that wraps the OSError (`raise ... from`) still shows as the full disk it was."""

    def broken(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "big.bin"))
        except OSError as exc:
            raise ValueError("could not save") from exc

    monkeypatch.setattr(train_run, "run_finetune", broken)
    config = tmp_path / "c.yaml"
    config.write_text("model: {name_or_path: m}\ndata: {path: d.jsonl}\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    assert f"No space left on device: {tmp_path / 'big.bin'} (" in result.output
    assert "MB free there). The disk is full" in " ".join(result.output.split())


def refuse_to_open(monkeypatch, target: Path) -> None:
    """What reading `target` without permission raises (the tests run as root, which may read anything)."""
    opened = pathlib.Path.open

    def guarded(self, *args, **kwargs):
        if self.resolve() == target.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", guarded)


@pytest.mark.parametrize("unreadable", ["data", "config"])
def test_a_file_without_read_permission_is_named(tmp_path, tiny_models, demo_files, monkeypatch, unreadable):
    config = write_config(tmp_path / "c.yaml", quick_config(tiny_models("llama"), *demo_files))
    target = demo_files[0] if unreadable == "data" else Path(config)
    refuse_to_open(monkeypatch, target)
    result = runner.invoke(app, ["data", config, "--n", "0"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{unreadable}: Permission denied: {target}" in output, "named where it is read"
    assert "fix its permissions (ls -l, chmod)" in output


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files without permission"
)
def test_a_data_file_without_read_permission_for_real(tmp_path, tiny_models, demo_files):
    data = tmp_path / "train.jsonl"
    data.write_text(demo_files[0].read_text())
    data.chmod(0)
    config = write_config(tmp_path / "c.yaml", quick_config(tiny_models("llama"), data, demo_files[1]))
    result = runner.invoke(app, ["data", config, "--n", "0"])
    assert result.exit_code == 2 and f"data: Permission denied: {data}" in " ".join(result.output.split())
