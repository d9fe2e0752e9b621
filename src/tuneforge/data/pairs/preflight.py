"""Preflight for preference rows: the pair-specific checks, each with what it found and what to change.

pair_prompt:   chosen and rejected are trained after the same prompt ids. Rendering each branch as a whole
               conversation can let the tokenizer merge the prompt's last characters into an answer's first
               token, and then the two branches are compared after different prompts.
prompt_match:  that prompt equals, token for token, the prompt inference builds (as for SFT).
pair_differs:  after the cut at max_length the two branches still differ: a pair whose only difference was
               cut away teaches nothing, and identical pairs in the data point at a broken export.
empty_branch:  no empty answer, and none that the cut removes whole.
truncation:    at most max_truncated_fraction of rows are cut (as for SFT).
The severities come from data.preflight (error, warn or off).
"""

from __future__ import annotations

from tuneforge.config.preflight import PreflightConfig
from tuneforge.data.pairs.encode import PairStats
from tuneforge.data.preflight import CheckResult, check_truncation, run_checks
from tuneforge.data.tokenize import AUTO_LENGTH_STEP


def rows_text(stats: PairStats, rows: list[int]) -> str:
    return f"{len(rows)} {'row' if len(rows) == 1 else 'rows'} of {stats.source} (first: row {rows[0]})"


def check_pair_prompt(stats: PairStats) -> tuple[bool, str]:
    if not stats.prompt_differs:
        return True, "chosen and rejected follow the same prompt ids in every row"
    return False, (
        f"{rows_text(stats, stats.prompt_differs)} have chosen and rejected after different prompt ids: the tokenizer "
        "merges the end of the prompt with the start of an answer (a generation prompt ending in a space, or "
        "an answer starting with whitespace), so the pair compares answers to different prompts. Use a template "
        "whose generation prompt ends with a newline or a special token (data.template), or strip the answers' "
        "leading whitespace."
    )


def check_prompt_match(stats: PairStats, allowed: float) -> tuple[bool, str]:
    mismatched = len(stats.prompt_mismatches)
    checked = stats.rows - len(stats.empty)
    if not mismatched:
        return True, f"{checked} training prompts equal their inference prompts token for token"
    share = mismatched / max(checked, 1)
    finding = (
        f"{rows_text(stats, stats.prompt_mismatches)} are trained after a prompt that differs from the one inference "
        "builds (the tokenizer merges prompt and answer at the boundary)"
    )
    if share > allowed:
        return False, (
            f"{finding}; more than the allowed {allowed:.0%}. Use a template whose generation prompt ends with "
            "a newline or a special token (data.template), or strip the answers' leading whitespace."
        )
    return True, f"{finding}; within the allowed {allowed:.0%}"


def check_pair_differs(stats: PairStats) -> tuple[bool, str]:
    if not stats.identical:
        return True, "chosen and rejected differ in every row after the cut at max_length"
    in_data = stats.identical_before_cut
    cut = len(stats.identical) - in_data
    fixes = []
    if cut:
        need = -(-stats.p99_length // AUTO_LENGTH_STEP) * AUTO_LENGTH_STEP
        fixes.append(
            f"{cut} differ only beyond train.max_length={stats.max_length}: raise it (99% of rows fit in {need})"
        )
    if in_data:
        fixes.append(f"{in_data} have the same chosen and rejected answer in the data: remove them")
    return False, (
        f"{rows_text(stats, stats.identical)} have the same tokens in both branches and were left out: "
        + "; ".join(fixes)
        + "."
    )


def check_empty_branch(stats: PairStats) -> tuple[bool, str]:
    problems = []
    if stats.empty:
        problems.append(f"{rows_text(stats, stats.empty)} have an empty answer: clean the data")
    if stats.cut_empty:
        problems.append(
            f"{rows_text(stats, stats.cut_empty)} lose a whole answer to the cut at train.max_length="
            f"{stats.max_length} (the prompt fills it): raise train.max_length"
        )
    if not problems:
        return True, "every answer is non-empty and keeps trained tokens after the cut"
    return False, "; ".join(
        problems
    ) + ". They were left out; to accept that, set data.preflight.empty_branch: warn."


def run_pair_preflight(policy: PreflightConfig, stats: PairStats, pairs: bool) -> list[CheckResult]:
    checks = {
        "pair_prompt": lambda: check_pair_prompt(stats),
        "prompt_match": lambda: check_prompt_match(stats, policy.max_prompt_mismatch_fraction),
        "pair_differs": lambda: check_pair_differs(stats),
        "empty_branch": lambda: check_empty_branch(stats),
        "truncation": lambda: check_truncation(stats, policy.max_truncated_fraction),
    }
    skip = () if pairs else ("pair_prompt", "pair_differs")
    return run_checks(policy, {name: check for name, check in checks.items() if name not in skip})
