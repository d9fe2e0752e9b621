"""The manual's commands, run: every shell block in README.md and docs/ is marked `<!-- run -->` (executed
here, in order, in a fresh workspace, offline on the tiny models), `<!-- run in: tests/FILE.py -->` (a
block that trains for minutes, executed as written by that test, which then checks what it made; so it
runs once) or `<!-- skip: why -->` (it needs a GPU, the hub, a long-running server, or is shown with
placeholders). After a run block, each `<!-- expect: TEXT -->` line is a line its output must hold. The
CLI and config references are generated: a stale page fails here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
        if not re.fullmatch(r"<!-- (run|run in: tests/\w+\.py|skip: .+) -->", block["marker"])
    ]
    assert unmarked == [], (
        "mark these blocks <!-- run -->, <!-- run in: tests/FILE.py --> or <!-- skip: why -->"
    )


def test_each_block_run_elsewhere_is_run_by_the_test_it_names():
    for page in PAGES:
        for block in blocks(page):
            if m := re.fullmatch(r"<!-- run in: (tests/\w+\.py) -->", block["marker"]):
                test = ROOT / m.group(1)
                assert test.exists(), f"{page.relative_to(ROOT)}:{block['line']} names a missing {test}"
                assert f'run_docs_block("{page.relative_to(ROOT)}"' in test.read_text(), (
                    f"{m.group(1)} does not run {page.relative_to(ROOT)}'s block"
                )


def docs_workspace(folder: Path) -> Path:
    """A folder laid out as a clone is: .venv (linked) and examples/ (copied), where the blocks run."""
    # the clone's .venv, or else the environment running the tests, if tuneforge is installed in it
    venv = next((v for v in (ROOT / ".venv", Path(sys.prefix)) if (v / "bin" / "tuneforge").exists()), None)
    if venv is None:
        pytest.skip("no .venv with tuneforge installed (make setup)")
    (folder / ".venv").symlink_to(venv)
    shutil.copytree(ROOT / "examples", folder / "examples")
    return folder


def run_block(page: Path, block: dict, workspace: Path) -> str:
    """Runs one block as written, in bash -e; returns its output after checking its expect lines."""
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block["text"]],
        cwd=workspace, capture_output=True, text=True, timeout=1500,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
    )  # fmt: skip
    said = " ".join((done.stdout + done.stderr).split())
    where = f"{page.relative_to(ROOT)}:{block['line']}"
    assert done.returncode == 0, f"{where} failed:\n{block['text']}\n{said[-3000:]}"
    for expected in block["expect"]:
        assert " ".join(expected.split()) in said, f"{where}: the output lacks {expected!r}:\n{said[-3000:]}"
    return said


def run_docs_block(page: str, test_file: str, workspace: Path) -> str:
    """What a `<!-- run in: tests/FILE.py -->` test calls: runs the page's block marked with its own name."""
    marked = [b for b in blocks(ROOT / page) if b["marker"] == f"<!-- run in: tests/{test_file} -->"]
    assert len(marked) == 1, f"{page} has {len(marked)} blocks marked <!-- run in: tests/{test_file} -->"
    (block,) = marked
    return run_block(ROOT / page, block, workspace)


def test_the_offline_blocks_run_as_documented(tmp_path):
    workspace = docs_workspace(tmp_path)
    ran = [
        run_block(page, b, workspace) for page in PAGES for b in blocks(page) if b["marker"] == "<!-- run -->"
    ]
    assert len(ran) >= 2


def test_the_cli_reference_page_is_current():
    from tuneforge.cli.reference import render

    page = ROOT / "docs" / "reference" / "cli.md"
    assert page.read_text() == render(), (
        "refresh it: python -m tuneforge.cli.reference --write docs/reference/cli.md"
    )
