"""Preflight: checks on the tokenized data that catch silent training failures before the first step.

Each check reports what it found and what to change; `data.preflight.<check>` makes it an error
(default), a warning, or turns it off. The LoRA-target check lives in modeling.check_targets.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset

from tuneforge.config import PreflightConfig
from tuneforge.errors import TuneforgeError
from tuneforge.tokenization import TokenizeStats


@dataclass
class CheckResult:
    name: str
    passed: bool
    severity: str
    message: str


def check_eos(train: Dataset, eos_id: int) -> tuple[bool, str]:
    missing = [
        i
        for i, (labels, cut) in enumerate(zip(train["labels"], train["truncated"]))
        if not cut and labels[-1] != eos_id
    ]
    if missing:
        return False, (
            f"{len(missing)} samples (first: {missing[0]}) do not end with a trained EOS (id {eos_id}): the model "
            "would not learn to stop. Use a template that ends answers with eos_token, or set train_on."
        )
    return True, "every complete sample ends with a trained EOS"


def check_trained_tokens(stats: TokenizeStats, max_length: int) -> tuple[bool, str]:
    lost = stats.empty_completion + stats.no_trained_tokens
    if lost:
        return False, (
            f"{lost} rows have nothing to train ({stats.empty_completion} with an empty answer, "
            f"{stats.no_trained_tokens} whose answer is cut off by train.max_length={max_length}); they were "
            "dropped. Clean the data, raise train.max_length, or set data.preflight.trained_tokens: warn."
        )
    return True, "every sample has trained tokens"


def check_double_bos(train: Dataset, bos_id: int | None) -> tuple[bool, str]:
    if bos_id is None:
        return True, "the tokenizer has no BOS token"
    doubled = [i for i, ids in enumerate(train["input_ids"]) if ids[:2] == [bos_id, bos_id]]
    if doubled:
        return False, (
            f"{len(doubled)} samples (first: {doubled[0]}) start with BOS twice: the template writes bos_token "
            "and something adds it again. Remove one from the template (data.template)."
        )
    return True, "no sample starts with a double BOS"


def check_prompt_match(stats: TokenizeStats) -> tuple[bool, str]:
    if stats.prompt_mismatches:
        return False, (
            f"{len(stats.prompt_mismatches)} of {stats.prompt_checked} checked rows (first: row "
            f"{stats.prompt_mismatches[0]}) tokenize the training prompt differently from the prompt "
            "inference builds with add_generation_prompt: the model would be trained on prompts it never sees. "
            "Use a template whose turns end with the EOS token, or another template (data.template)."
        )
    return True, f"{stats.prompt_checked} training prompts equal their inference prompts token for token"


def check_truncation(stats: TokenizeStats, max_length: int, allowed: float) -> tuple[bool, str]:
    share = stats.truncated / max(stats.rows, 1)
    summary = (
        f"{stats.truncated} of {stats.rows} samples ({share:.1%}) are cut at train.max_length={max_length}"
    )
    if share > allowed:
        return False, (
            f"{summary}, more than the allowed {allowed:.0%}: cut answers teach the model to stop mid-sentence "
            "without EOS. Raise train.max_length or data.preflight.max_truncated_fraction."
        )
    return True, summary


def check_overlap(train: Dataset, eval_set: Dataset | None) -> tuple[bool, str]:
    if eval_set is None:
        return True, "no evaluation set"
    seen = {tuple(ids) for ids in train["input_ids"]}
    shared = sum(tuple(ids) in seen for ids in eval_set["input_ids"])
    if shared:
        return False, (
            f"{shared} of {len(eval_set)} evaluation samples also occur in training: held-out loss would be "
            "optimistic. Deduplicate the data or use a separate data.eval_path."
        )
    return True, "no evaluation sample occurs in training"


def run_preflight(
    policy: PreflightConfig,
    *,
    train: Dataset,
    eval_set: Dataset | None,
    stats: TokenizeStats,
    bos_id: int | None,
    eos_id: int,
    max_length: int,
    has_prompts: bool,
) -> list[CheckResult]:
    checks = {
        "eos": lambda: check_eos(train, eos_id),
        "trained_tokens": lambda: check_trained_tokens(stats, max_length),
        "double_bos": lambda: check_double_bos(train, bos_id),
        "prompt_match": (lambda: check_prompt_match(stats)) if has_prompts else None,
        "truncation": lambda: check_truncation(stats, max_length, policy.max_truncated_fraction),
        "overlap": lambda: check_overlap(train, eval_set),
    }
    results = []
    for name, check in checks.items():
        severity = getattr(policy, name)
        if severity == "off" or check is None:
            continue
        passed, message = check()
        results.append(CheckResult(name, passed, severity, message))
    return results


def enforce(results: list[CheckResult]) -> None:
    failures = [r for r in results if not r.passed and r.severity == "error"]
    if failures:
        lines = "\n".join(f"  - {r.name}: {r.message}" for r in failures)
        raise TuneforgeError(
            f"preflight failed before training:\n{lines}\n"
            "Fix the data or config; to accept a finding, set data.preflight.<check>: warn (or off)."
        )
