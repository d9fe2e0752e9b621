"""`tuneforge studio` end to end in headless Chromium (Debian's chromium driven by playwright; skips where
either is absent), on the offline tiny model and demo data, as a new user walks it: New run -> a passing
preview -> a planted template without EOS disables Train -> train -> the loss chart gains points -> Stop
leaves a sealed checkpoint -> Resume -> the studio is killed and the run finishes anyway -> a new studio
shows it -> Evaluate -> Chat equals `tuneforge generate` -> Export hf passes its check -> Compare with the
run `tuneforge train` made from the downloaded YAML. Screenshots of every page, checked for content."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import SMALL
from PIL import Image
from test_serve import free_port

from tuneforge.run.checkpoints import checkpoint_dirs, problem
from tuneforge.run.lock import is_locked
from tuneforge.studio.jobs import stop_run
from tuneforge_dev.demo_data import write_demo_dataset
from tuneforge_dev.live_server import wait_until_up
from tuneforge_dev.tiny_model import build_tiny_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROMPT = "list the files in /srv/data"
# Slow enough steps (32 forward passes each), and enough of them, that Stop lands mid-run even on a fast CPU
# (20 steps once finished before the click); the rest as the quickstart.
STEPS = 80
EXTRA = """train.grad_accumulation=32
train.learning_rate=2.0e-3
train.logging_steps=2
train.eval_steps=20
train.save_steps=100
data.eval_path=data/eval.jsonl
lora.modules_to_save=[embed_tokens, lm_head]
eval.max_new_tokens=24"""
NO_EOS = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
SHOTS = Path(os.environ.get("TUNEFORGE_SCREENSHOTS", "")) if os.environ.get("TUNEFORGE_SCREENSHOTS") else None
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    build_tiny_model(root / "models" / "tiny", "llama", SMALL)
    write_demo_dataset(root / "data", n_train=160, n_eval=24)
    (root / "no_eos.jinja").write_text(NO_EOS)
    return root


def start_studio(workspace: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "studio",
        "--workspace",
        str(workspace),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    url = f"http://127.0.0.1:{port}/"
    wait_until_up(url, process)
    return process, url


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, pattern: str, timeout: float = 120) -> str:
    """Waits until the element's text matches `pattern` (a regex); returns the text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = page.locator(selector).inner_text() if page.locator(selector).count() else ""
        if re.search(pattern, found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"{selector} never matched {pattern!r}; it says: {found[-800:]!r}")


def pick(page, elem_id: str, value: str) -> None:
    """A Gradio dropdown: type the value and press Enter (custom values are allowed)."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    box.press("Enter")
    page.locator("body").click(position={"x": 5, "y": 5})


def shot(page, path: Path, name: str) -> Path:
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=60_000)
    out = path / f"studio-{name}.png"
    page.screenshot(path=str(out), full_page=True)
    colours = Image.open(out).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, f"the {name} screenshot is blank"
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, SHOTS / out.name)
    return out


def points(page) -> int:
    caption = text_of(page, "#loss-chart")
    found = re.search(r"(\d+) train loss points", caption)
    return int(found.group(1)) if found else 0


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def new_run(page, tmp_path: Path) -> Path:
    """Fill the form, see the preview pass, plant a template without EOS, set it right, download the YAML."""
    page.locator("#name textarea, #name input").first.fill("ui-run")
    pick(page, "base", "models/tiny")
    pick(page, "data", "data/train.jsonl")
    page.locator("#max-steps input").fill(str(STEPS))
    page.locator("#extra textarea").fill(EXTRA)
    page.locator("#extra textarea").blur()
    wait_text(page, "#verdict", "Ready to train")
    wait_text(page, "#shape", "detected: prompt_completion")
    report = wait_text(page, "#data-report", "preflight|eos")
    assert "sample" in report and "trained" in report, report[:500]
    assert "plan" in text_of(page, "#plan")
    shot(page, tmp_path, "new-run")
    pick(page, "template", "no_eos.jinja")
    wait_text(page, "#verdict", "Train is disabled.*eos")
    assert page.locator("#train").is_disabled()
    shot(page, tmp_path, "new-run-refused")
    pick(page, "template", "auto")
    wait_text(page, "#verdict", "Ready to train")
    with page.expect_download() as download:
        page.locator("#download-yaml").click()
    saved = tmp_path / "downloaded.yaml"
    download.value.save_as(saved)
    return saved


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_studio_walks_a_fine_tune_from_setup_to_export(workspace, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    run_dir = workspace / "runs" / "ui-run"
    studio, url = start_studio(workspace)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.goto(url)
            downloaded = new_run(page, tmp_path)
            page.locator("#train").click()
            wait_text(page, "#launched", "Started")
            wait_text(page, "#run-status", "running")
            wait_text(page, "#loss-chart", r"[1-9]\d* train loss points")
            first = points(page)
            wait_text(page, "#loss-chart", rf"(?!{first} )\d+ train loss points")
            assert points(page) > first, "the chart did not gain points while training"
            page.locator("#stop").click()
            wait_text(page, "#run-status", "interrupted", timeout=60)
            shot(page, tmp_path, "runs")
            stopped_at = json.loads((run_dir / "manifest.json").read_text())["global_step"]
            (checkpoint,) = checkpoint_dirs(run_dir / "checkpoints")  # save_steps is 100: the stop's own
            assert checkpoint.name == f"checkpoint-{stopped_at}" and problem(checkpoint) is None
            assert 0 < stopped_at < STEPS
            page.locator("#resume").click()
            wait_text(page, "#run-action", "Resuming")
            browser.close()
        log, deadline = workspace / "studio" / "logs" / "runs%2Fui-run.log", time.monotonic() + 120
        while not (is_locked(run_dir) and "resuming from" in log.read_text()):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        studio.send_signal(signal.SIGKILL)  # the studio dies while the run trains: the run must not
        studio.wait(timeout=30)
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
        deadline = time.monotonic() + 300
        while json.loads((run_dir / "manifest.json").read_text())["status"] != "finished":
            assert time.monotonic() < deadline, "the run did not finish after the studio was killed"
            time.sleep(1)
        cli_run = workspace / "runs" / "cli-run"
        subprocess.run(
            [sys.executable, "-m", "tuneforge.cli", "train", str(downloaded), "--output-dir", "runs/cli-run"],
            cwd=workspace, env=ENV, check=True, capture_output=True,
        )  # fmt: skip
        ui_config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert ui_config == yaml.safe_load((cli_run / "config.yaml").read_text())
        assert yaml.safe_load(downloaded.read_text()) == ui_config
        studio, url = start_studio(workspace)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            tab(page, "Runs")
            pick(page, "run-choice", "runs/ui-run")
            wait_text(page, "#run-status", rf"finished.*step {STEPS} of {STEPS}")
            wait_text(page, "#runs-table", "cli-run")
            after_resume(page, workspace, tmp_path)
            browser.close()
    finally:
        if studio.poll() is None:
            studio.terminate()
            studio.wait(timeout=30)
        if is_locked(run_dir):  # a failed walk leaves no training behind
            stop_run(run_dir)


def after_resume(page, workspace: Path, tmp_path: Path) -> None:
    """Evaluate, Chat, Export and Compare on the finished run, in a studio started after it."""
    tab(page, "Evaluate")
    page.locator("#evaluate").click()
    figures = wait_text(page, "#eval-figures", "exact_match", timeout=300)
    assert "loss" in figures
    shot(page, tmp_path, "evaluate")
    generated = tmp_path / "generated.jsonl"
    subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "generate", "runs/ui-run", "--prompt", PROMPT,
         "--max-new-tokens", "24", "--output", str(generated)],
        cwd=workspace, env=ENV, check=True, capture_output=True,
    )  # fmt: skip
    expected = json.loads(generated.read_text().splitlines()[0])
    tab(page, "Chat")
    pick(page, "chat-source", "runs/ui-run")
    page.locator("#chat-load").click()
    wait_text(page, "#chat-loaded", "loaded")
    page.locator("#max-tokens input[type=number]").fill("24")
    page.locator("#max-tokens input[type=number]").press("Enter")
    page.locator("#message textarea").fill(PROMPT)
    page.locator("#message textarea").press("Enter")
    answer = expected["generation"].strip()
    page.wait_for_function(
        "(text) => { const b = document.querySelectorAll(`#tuned-chat [data-testid='bot']`);"
        " return b.length && b[b.length - 1].innerText.trim() === text; }",
        arg=answer,
        timeout=60_000,
    )
    shot(page, tmp_path, "chat")
    tab(page, "Export")
    page.locator("#export").click()
    wait_text(page, "#export-verdict", "check passed", timeout=300)
    assert json.loads((workspace / "exports" / "ui-run-hf" / "export_check.json").read_text())["passed"]
    shot(page, tmp_path, "export")
    tab(page, "Compare")
    pick(page, "compare-a", "runs/ui-run")
    pick(page, "compare-b", "runs/cli-run")
    page.locator("#compare-go").click()
    wait_text(page, "#compare-note", "the configs are the same")
    shot(page, tmp_path, "compare")
