"""The architecture's rules, checked: no import circle, the import-linter contracts (each seen to fail on a
planted violation), method names only in the registry and the recipes, small files and functions."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tuneforge.config.schema import TrainConfig
from tuneforge.train.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def import_cycles(graph) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan) with more than one member, or a self-import."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(module: str) -> None:
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in graph.modules or imported.split(".")[0] not in ("tuneforge", "tuneforge_dev"):
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module.startswith("tuneforge") and module not in index:
            visit(module)
    return groups


def test_no_module_imports_itself_back_through_others():
    graph = grimp.build_graph("tuneforge", "tuneforge_dev")
    assert import_cycles(graph) == []
    # the check itself, on a planted circle: a config module would import the run driver that imports it
    graph.add_import(importer="tuneforge.config.section", imported="tuneforge.train.run")
    assert any("tuneforge.config.section" in group for group in import_cycles(graph))


# One violation per contract in pyproject.toml, planted in a copy of src/.
PLANTED = {
    "layers": ("tuneforge/config/section.py", "import tuneforge.train.run"),
    "acyclic": ("tuneforge/train/recipe.py", "import tuneforge.train.run"),
    "data-model": ("tuneforge/data/collate.py", "import tuneforge.model.load"),
    "serve-export": ("tuneforge/serve/protocol.py", "import tuneforge.export.merge"),
    "eval-train": ("tuneforge/eval/metrics.py", "import tuneforge.train.builders"),
    "run-dir": ("tuneforge/run/files.py", "import transformers"),
    "recipes": ("tuneforge/cli/train.py", "import tuneforge.train.sft"),
    "export-formats": ("tuneforge/export/exporter.py", "import tuneforge.export.formats.gguf"),
    "engines": ("tuneforge/eval/scoring.py", "import tuneforge.infer.engines.transformers"),
    "serving-libraries": ("tuneforge/train/summary.py", "import gradio"),
    "dev-only": ("tuneforge/errors.py", "import tuneforge_dev.tiny_model"),
}


def contract_names() -> dict[str, str]:
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return {c["id"]: c["name"] for c in contracts}


def lint_imports(src: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(src)}
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return re.sub(r"\s+", " ", done.stdout + done.stderr)


def test_every_contract_is_checked_and_fails_on_a_planted_violation(tmp_path):
    names = contract_names()
    assert set(PLANTED) == set(names), "each contract in pyproject.toml needs a planted violation here"
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    assert "BROKEN" not in lint_imports(copy)
    for path, line in PLANTED.values():
        target = copy / path
        target.write_text(target.read_text() + f"\n{line}  # planted\n")
    report = lint_imports(copy)
    for contract_id, name in names.items():
        flat = re.sub(r"\s+", " ", name)
        assert f"{flat} BROKEN" in report, f"contract {contract_id!r} did not catch its planted violation"


RECIPE_MODULES = {"methods.py", "sft.py", "preference.py", "preference_trainer.py", "preference_loss.py"}


def method_name_comparisons(source: str, where: str) -> list[str]:
    """Comparisons of something named *method* with a registered method's name (==, !=, in a tuple)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        parts = [node.left, *node.comparators]
        names = {
            c.value
            for part in parts
            for c in ast.walk(part)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        }
        text = " ".join(ast.unparse(part) for part in parts)
        if names & set(METHODS) and re.search(r"method(?!s)", text) and "lora" not in text:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_code_outside_the_registry_and_the_recipes_asks_which_method_runs():
    found = [
        hit
        for path in sorted((SRC / "tuneforge").rglob("*.py"))
        if not (path.parent.name == "train" and path.name in RECIPE_MODULES)
        for hit in method_name_comparisons(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


@pytest.mark.parametrize(
    "planted",
    [
        'if config.train.method != "sft":\n    pass\n',
        'if method in ("dpo", "simpo"):\n    pass\n',
        'ok = train.method == "kto"\n',
    ],
)
def test_the_method_name_check_catches_a_planted_comparison(planted):
    assert method_name_comparisons(planted, "planted.py")


def test_every_method_is_documented_where_users_choose_it():
    description = TrainConfig.model_fields["method"].description
    docs = "".join(page.read_text() for page in (ROOT / "docs").rglob("*.md"))
    for name in METHODS:
        assert re.search(rf"\b{name}\b", description), f"train.method's description does not name {name}"
        assert f"`{name}`" in docs or f"method: {name}" in docs, f"the docs do not name method {name}"


def test_every_registry_names_its_variants_as_they_name_themselves():
    from typing import get_args

    from tuneforge.config.serve import ServeConfig
    from tuneforge.export.formats import FORMATS
    from tuneforge.infer.engine import ENGINES

    assert all(name == recipe.name for name, recipe in METHODS.items())
    assert all(name == fmt.name for name, fmt in FORMATS.items())
    assert set(ENGINES) == set(get_args(ServeConfig.model_fields["backend"].annotation))


def long_parts(root: Path, max_lines: int = 400, max_function: int = 60) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > max_lines:
            found.append(f"{path.relative_to(root)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > max_function:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_files_and_functions_stay_small():
    assert long_parts(SRC) == []


@pytest.mark.parametrize("planted", ["def f():\n" + "    x = 1\n" * 61, "x = 1\n" * 401])
def test_the_size_check_catches_a_planted_long_part(tmp_path, planted):
    (tmp_path / "long.py").write_text(planted)
    assert long_parts(tmp_path)
