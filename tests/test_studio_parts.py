"""The studio's parts without a browser: the workspace boundary, the form's defaults (the CLI's), uploads,
the run view's ETA and curves, and a refused exposure. The whole walk in a browser: test_studio.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuneforge.config.loading import validate_config
from tuneforge.errors import TuneforgeError
from tuneforge.studio.app import studio_logins
from tuneforge.studio.form import RunForm
from tuneforge.studio.jobs import stop_run
from tuneforge.studio.watch import curves, eta
from tuneforge.studio.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    (root / "data").mkdir(parents=True)
    (root / "data" / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    (tmp_path / "secret.jsonl").write_text("{}\n")
    (root / "data" / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    return Workspace.open(root, root / "runs")


def test_paths_outside_the_workspace_are_refused(ws, tmp_path):
    assert ws.inside("data/train.jsonl", "Data file") == ws.root / "data" / "train.jsonl"
    for outside in ("../secret.jsonl", str(tmp_path / "secret.jsonl"), "data/link.jsonl", "/etc/passwd"):
        with pytest.raises(TuneforgeError, match="outside the workspace"):
            ws.inside(outside, "Data file")
    with pytest.raises(TuneforgeError, match="outside the workspace"):
        Workspace.open(ws.root, ws.root.parent / "elsewhere")
    form = RunForm(base="models/tiny", data="../secret.jsonl")
    with pytest.raises(TuneforgeError, match="Data file '../secret.jsonl' is outside"):
        form.config(ws)
    with pytest.raises(TuneforgeError, match="Base model '/etc' is outside"):
        RunForm(base="/etc", data="data/train.jsonl").config(ws)
    with pytest.raises(TuneforgeError, match="Template .* is outside"):
        RunForm(base="org/model", data="data/train.jsonl", template="../x.jinja").config(ws)
    # the extra settings name files too: every path of the finished config is checked
    for extra in (
        "data.eval_path=/etc/passwd",
        "data.path=../secret.jsonl",
        "model.adapter=/tmp",
        "data.mix=[{path: ../secret.jsonl}]",
        "grpo.rewards=[{kind: python, file: /tmp/evil.py, function: f}]",
        "data.template=/tmp/t.jinja",
    ):
        with pytest.raises(TuneforgeError, match="outside the workspace"):
            RunForm(base="org/model", data="data/train.jsonl", extra=extra).config(ws)
    with pytest.raises(TuneforgeError, match="trust_remote_code"):
        RunForm(base="org/model", data="data/train.jsonl", extra="model.trust_remote_code=true").config(ws)


def test_the_form_defaults_are_the_cli_defaults(ws):
    """A form left as it opens writes the config a user's minimal YAML gives: every default the CLI's."""
    form = RunForm(base="org/model", data="data/train.jsonl")  # a hub id: not a path, allowed
    minimal = validate_config({"model": {"name_or_path": "org/model"}, "data": {"path": "data/train.jsonl"}})
    assert form.config(ws).model_dump() == minimal.model_dump()


def test_form_fields_and_extra_settings_reach_the_config(ws):
    form = RunForm(
        base="org/model",
        data="data/train.jsonl",
        adapter="qlora",
        max_steps=7,
        target_modules="q_proj, v_proj",
    )
    form.columns = {"prompt": "question", "completion": "completion"}
    form.extra = "# a comment\ntrain.grad_accumulation=4\nlora.modules_to_save=[lm_head]"
    config = form.config(ws)
    assert (config.quant.mode, config.lora.method, config.train.max_steps) == ("4bit", "lora", 7)
    assert config.lora.target_modules == ["q_proj", "v_proj"] and config.lora.modules_to_save == ["lm_head"]
    assert config.train.grad_accumulation == 4 and config.data.columns.prompt == "question"
    assert RunForm(base="org/model", data="data/train.jsonl", adapter="full").config(ws).lora.method == "full"
    with pytest.raises(TuneforgeError, match="Extra settings, line 2"):
        RunForm(base="org/model", data="data/train.jsonl", extra="train.seed=1\nnot a setting").config(ws)
    with pytest.raises(TuneforgeError, match="train.max_stepz"):
        RunForm(base="org/model", data="data/train.jsonl", extra="train.max_stepz=3").config(ws)


def test_uploads_land_in_the_workspace_and_never_replace_another_file(ws, tmp_path):
    first, second = tmp_path / "my data.jsonl", tmp_path / "other" / "my data.jsonl"
    second.parent.mkdir()
    first.write_text('{"text": "one"}\n')
    second.write_text('{"text": "two"}\n')
    saved = ws.save_upload(first)
    assert (
        saved == ws.uploads / "my_data.jsonl" and ws.save_upload(first) == saved
    )  # the same file: kept once
    again = ws.save_upload(second)
    assert (
        again != saved and saved.read_text() == first.read_text() and again.read_text() == second.read_text()
    )
    assert "studio/uploads/my_data.jsonl" in ws.data_files()
    (tmp_path / "x.sh").write_text("rm -rf /")
    with pytest.raises(TuneforgeError, match="upload a data file"):
        ws.save_upload(tmp_path / "x.sh")


def test_the_eta_follows_the_recent_pace_and_curves_hold_every_point():
    records = [{"step": s, "time": 100.0 + 0.5 * s, "loss": 5 - s / 10} for s in range(0, 21, 2)]
    records.append({"step": 20, "time": 110.0, "eval_loss": 3.0})
    assert eta(records, 20, 40) == pytest.approx(10.0)  # 20 steps left at 0.5 s a step
    assert eta(records, 40, 40) is None and eta(records[:1], 0, 40) is None and eta(records, 20, None) is None
    # resumed at t=1000 after standing stopped: the pace is the new records' only
    resumed = [*records, *({"step": s, "time": 1000.0 + s, "loss": 1.0} for s in range(22, 31, 2))]
    assert eta(resumed, 30, 40) > 500  # counted over the gap, the pace is 51 s a step
    assert eta(resumed, 30, 40, since=1000.0) == pytest.approx(10.0)
    frame = curves(records, {"loss": "train loss", "eval_loss": "held-out loss"})
    assert (frame["curve"] == "train loss").sum() == 11 and (frame["curve"] == "held-out loss").sum() == 1


def test_stopping_a_run_that_is_not_training_is_refused(tmp_path):
    with pytest.raises(TuneforgeError, match="not training"):
        stop_run(tmp_path)


def test_another_interface_without_a_login_is_refused(tmp_path):
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "studio",
        "--host",
        "0.0.0.0",
        "--workspace",
        str(tmp_path),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TUNEFORGE_APP_AUTH": ""},  # no login from the environment either
    )
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, said
    assert "--host 0.0.0.0 lets other machines connect" in said and "--auth" in said


def test_a_login_is_user_and_password_or_a_bare_token(monkeypatch, tmp_path):
    monkeypatch.delenv("TUNEFORGE_APP_AUTH", raising=False)
    assert studio_logins(None, None) is None
    assert studio_logins("me:secret", None) == [("me", "secret")]
    check = studio_logins("s3cret-token", None)
    assert check("anyone", "s3cret-token") and not check("anyone", "s3cret") and not check("x", "")
    monkeypatch.setenv("TUNEFORGE_APP_AUTH", "env-token")
    assert studio_logins(None, None)("u", "env-token")
    with pytest.raises(TuneforgeError, match="--auth is empty"):
        studio_logins("  ", None)
    with pytest.raises(TuneforgeError, match="not both"):
        studio_logins("token", tmp_path / "logins")
