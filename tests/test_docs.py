"""The manual's commands, run: every shell block in README.md and docs/ is marked `<!-- run -->` (executed
here, in order, in a fresh workspace, offline on the tiny models) or `<!-- skip: why -->` (it needs a GPU,
the hub, a long-running server, or is shown with placeholders). After a run block, each
`<!-- expect: TEXT -->` line is a line its output must hold. The CLI and config references are generated:
a stale page fails here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL = ("```bash", "```sh", "```shell", "```console")


def blocks(page: Path) -> list[dict]:
    """Each shell block: its marker line, its text, and the expectations that follow it."""
    lines, found, fence = page.read_text().splitlines(), [], False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            if not fence and line.strip() in SHELL:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                after = [
                    m.group(1)
                    for ln in lines[end + 1 : end + 6]
                    if (m := re.match(r"<!-- expect: (.*) -->", ln))
                ]
                marker = lines[i - 1].strip() if i else ""
                found.append(
                    {"line": i + 1, "marker": marker, "text": "\n".join(lines[i + 1 : end]), "expect": after}
                )
            fence = not fence
    return found


def test_every_shell_block_is_marked_run_or_skip_with_a_reason():
    unmarked = [
        f"{page.relative_to(ROOT)}:{block['line']}"
        for page in PAGES
        for block in blocks(page)
        if not re.fullmatch(r"<!-- (run|skip: .+) -->", block["marker"])
    ]
    assert unmarked == [], "mark these blocks <!-- run --> or <!-- skip: why -->"


def run_blocks(page: Path, workspace: Path) -> int:
    ran = 0
    for block in blocks(page):
        if block["marker"] != "<!-- run -->":
            continue
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block["text"]],
            cwd=workspace, capture_output=True, text=True, timeout=900,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        )  # fmt: skip
        said = " ".join((done.stdout + done.stderr).split())
        where = f"{page.relative_to(ROOT)}:{block['line']}"
        assert done.returncode == 0, f"{where} failed:\n{block['text']}\n{said[-3000:]}"
        for expected in block["expect"]:
            assert " ".join(expected.split()) in said, (
                f"{where}: the output lacks {expected!r}:\n{said[-3000:]}"
            )
        ran += 1
    return ran


def test_the_offline_blocks_run_as_documented(tmp_path):
    venv = ROOT / ".venv"
    if not (venv / "bin" / "tuneforge").exists():
        pytest.skip("no .venv with tuneforge installed (make setup)")
    (tmp_path / ".venv").symlink_to(venv)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    assert sum(run_blocks(page, tmp_path) for page in PAGES) >= 2


def test_the_cli_reference_page_is_current():
    from tuneforge.cli.reference import render

    page = ROOT / "docs" / "reference" / "cli.md"
    assert page.read_text() == render(), (
        "refresh it: python -m tuneforge.cli.reference --write docs/reference/cli.md"
    )
