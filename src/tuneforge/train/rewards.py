"""GRPO's rewards: the `grpo.rewards` config turned into functions that score sampled completions.

Every reward is called as `function(prompts, completions, rows)` with three aligned lists (row i is the
data row that prompt i came from, as a dict) and returns one float per completion. The built-in kinds
reuse tuneforge eval's metrics (on 0..1) against `row[column]`; `python` rewards are your own function,
loaded from your file and run in the training process: it is your code, with your permissions.

    rewards = build_rewards(config.grpo.rewards)        # loads python files; errors name file and line
    scores = score_completions(rewards, prompts, completions, rows)
    scores.total          # weighted sum per completion, what training maximises
    scores.per_reward     # unweighted, by reward name, for the logs
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import numbers
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneforge.config.grpo import METRIC_KINDS, RewardConfig, duplicate_names
from tuneforge.errors import TuneforgeError
from tuneforge.eval.metrics import compute_metrics

RewardFn = Callable[[list[str], list[str], list[dict]], list[float]]
MODULE_NUMBERS = itertools.count()  # each loaded file gets its own module name: two files may share a stem


@dataclass(frozen=True)
class Reward:
    """One configured reward: `function` gives unweighted scores; `maximum` is the best score it can give
    (1.0 for metrics and regex, 0.0 for the length penalty, None when unknown: your own function)."""

    name: str
    weight: float
    function: RewardFn
    maximum: float | None


@dataclass
class RewardScores:
    total: list[float]
    """The weighted sum of every reward, per completion."""
    per_reward: dict[str, list[float]]
    """Unweighted scores, per reward name."""


def build_rewards(configs: list[RewardConfig]) -> list[Reward]:
    """The rewards of `grpo.rewards`, in order. Loads python files now, so a missing file or function or a
    syntax error is a TuneforgeError before any model is loaded."""
    problem = duplicate_names(configs)
    if problem:
        raise TuneforgeError(f"grpo.rewards: {problem}")
    return [build_reward(config, f"grpo.rewards[{index}]") for index, config in enumerate(configs)]


def build_reward(config: RewardConfig, where: str) -> Reward:
    if config.kind in METRIC_KINDS:
        return Reward(config.label, config.weight, metric_reward(config.kind, config.column, where), 1.0)
    if config.kind == "regex":
        return Reward(config.label, config.weight, regex_reward(config.pattern), 1.0)
    if config.kind == "length":
        return Reward(config.label, config.weight, length_reward(config.max_words), 0.0)
    if config.kind == "python":
        user = load_user_function(config.file, config.function, where)
        return Reward(config.label, config.weight, checked(user, config.file, config.function), None)
    raise ValueError(f"unknown reward kind {config.kind!r}")  # the config's Literal makes this a bug


def score_completions(
    rewards: list[Reward], prompts: list[str], completions: list[str], rows: list[dict]
) -> RewardScores:
    """Every reward's scores for the completions (prompts, completions and rows aligned) and their
    weighted total."""
    if not len(prompts) == len(completions) == len(rows):
        raise ValueError(
            f"{len(prompts)} prompts, {len(completions)} completions and {len(rows)} rows: they must align"
        )
    per_reward = {reward.name: reward.function(prompts, completions, rows) for reward in rewards}
    total = [0.0] * len(completions)
    for reward in rewards:
        total = [t + reward.weight * s for t, s in zip(total, per_reward[reward.name])]
    return RewardScores(total=total, per_reward=per_reward)


def metric_reward(kind: str, column: str, where: str) -> RewardFn:
    """eval's metric `kind` per completion against `row[column]`, on 0..1 (eval reports 0..100)."""

    def score(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
        return [
            compute_metrics([kind], [completion], [references_of(row, column, where)])[kind] / 100
            for completion, row in zip(completions, rows)
        ]

    return score


def references_of(row: dict, column: str, where: str) -> list[str]:
    """The reference answers in `row[column]`: a string, or a non-empty list of strings."""
    if column not in row:
        raise TuneforgeError(
            f"{where}.column: the rows have no column {column!r} holding the reference answer (this row has "
            f"{', '.join(map(repr, row)) or 'no columns'}); set column to one of them"
        )
    value = row[column]
    references = [value] if isinstance(value, str) else value
    if (
        not isinstance(references, list | tuple)
        or not references
        or not all(isinstance(ref, str) for ref in references)
    ):
        raise TuneforgeError(
            f"{where}.column: column {column!r} must hold a reference answer (a string or a list of strings); "
            f"a row has {value!r}"
        )
    return list(references)


def regex_reward(pattern: str) -> RewardFn:
    """1.0 for each completion in which `pattern` is found (re.search), else 0.0."""
    compiled = re.compile(pattern)

    def score(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
        return [1.0 if compiled.search(completion) else 0.0 for completion in completions]

    return score


def length_reward(max_words: int) -> RewardFn:
    """0 up to `max_words` whitespace-separated words, then linearly down to -1 at twice that, and -1 beyond
    (DAPO's soft overlong penalty with an interval as long as the limit, counted in words)."""

    def score(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
        return [-min(1.0, max(0, len(c.split()) - max_words) / max_words) for c in completions]

    return score


def load_user_function(file: str, function: str, where: str) -> Callable:
    """`function` from the Python file `file` (relative to the working directory), imported as a new module."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise TuneforgeError(
            f"{where}.file: reward file not found: {file} (resolved to {path.resolve()}); relative paths are "
            "read from the directory you run tuneforge in"
        )
    location = str(path.resolve())
    name = f"tuneforge_user_reward_{next(MODULE_NUMBERS)}"
    spec = importlib.util.spec_from_file_location(name, location)
    if spec is None:  # no loader for that suffix
        raise TuneforgeError(f"{where}.file: {file} is not a Python file: name a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling inside the file look their module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise TuneforgeError(f"reward file {file}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # the file's own top-level code failed: show where, in its terms
        del sys.modules[name]
        line = deepest_line(exc, location)
        raise TuneforgeError(
            f"reward file {file}:{line} raised {type(exc).__name__} while loading: {exc}"
        ) from exc
    found = getattr(module, function, None)
    if not callable(found):
        defined = sorted(k for k, v in vars(module).items() if getattr(v, "__module__", None) == name)
        raise TuneforgeError(
            f"{where}.function: {file} has no function {function!r}; it defines: "
            f"{', '.join(defined) or 'no functions'}"
        )
    return found


def deepest_line(exc: BaseException, location: str) -> int | str:
    """The line of the innermost traceback frame in the file at `location` ('?' when none is)."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == location]
    return lines[-1] if lines else "?"


def checked(user: Callable, file: str, function: str) -> RewardFn:
    """`user` with its failures and its answers checked: errors name the file, line and function."""
    location = str(Path(file).expanduser().resolve())

    def score(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
        try:
            result = user(prompts, completions, rows)
        except Exception as exc:
            line = deepest_line(exc, location)
            raise TuneforgeError(
                f"reward function {file}:{line} (function {function}) raised {type(exc).__name__}: {exc}"
            ) from exc
        return validated(result, len(completions), f"reward function {file} (function {function})")

    return score


def validated(result: object, expected: int, who: str) -> list[float]:
    """`result` as a list of `expected` finite floats, or a TuneforgeError saying what came back instead."""
    if hasattr(result, "tolist"):  # a numpy array or torch tensor
        result = result.tolist()
    if not isinstance(result, list | tuple):
        raise TuneforgeError(
            f"{who} returned {type(result).__name__} {short(result)}: it must return a list of one number per "
            f"completion ({expected})"
        )
    if len(result) != expected:
        raise TuneforgeError(
            f"{who} returned {len(result)} scores for {expected} completions: it must return one per completion"
        )
    for index, value in enumerate(result):
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise TuneforgeError(
                f"{who} returned {short(value)} for completion {index}: every score must be a finite number "
                "(give 0.0 to a completion it does not judge)"
            )
    return [float(value) for value in result]


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
