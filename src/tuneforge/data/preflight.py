"""Preflight: checks on the tokenized data that catch silent training failures before the first step.

Each check reports what it found and what to change; `data.preflight.<check>` makes it an error
(default), a warning, or turns it off. The per-sample comparisons behind prompt_match and answer_tokens
run while tokenizing (tokenize.py); the LoRA-target check lives in model/targets.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset
from jinja2 import TemplateError

from tuneforge.config.schema import PreflightConfig
from tuneforge.data.tokenize import TokenizeStats, covering_length
from tuneforge.errors import TuneforgeError


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
            f"{len(missing)} samples (first: {missing[0]}) do not end with a trained EOS (id {eos_id}): the "
            "template writes no eos_token after the answer, so the model would not learn to stop. Use a template "
            "that ends answers with {{ eos_token }} (every built-in does) or add it to yours (data.template)."
        )
    return True, "every complete sample ends with a trained EOS"


def named_rows(rows: list[int], shown: int = 5) -> str:
    """'row 4' or 'rows 4, 9, 12 and 3 more': which rows to look at, not a wall of numbers."""
    if len(rows) == 1:
        return f"row {rows[0]}"
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return "rows " + ", ".join(str(n) for n in rows[:shown]) + more


def check_trained_tokens(stats: TokenizeStats) -> tuple[bool, str]:
    if stats.empty_completion:
        rows = named_rows(stats.empty_rows) if stats.empty_rows else "rows not recorded"
        return False, (
            f"{stats.empty_completion} rows have an empty answer ({stats.source}: {rows}): nothing to train, "
            "so they were left out. Clean the data, or set data.preflight.trained_tokens: warn."
        )
    return True, "every row has an answer to train on"


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


def check_prompt_match(stats: TokenizeStats, allowed: float) -> tuple[bool, str]:
    mismatched = len(stats.prompt_mismatches)
    if not mismatched:
        return True, f"{stats.prompt_checked} training prompts equal their inference prompts token for token"
    share = mismatched / max(stats.prompt_checked, 1)
    finding = (
        f"{mismatched} of {stats.prompt_checked} samples (first: row {stats.prompt_mismatches[0]}) have a "
        "training prompt that differs from the prompt inference builds: the tokenizer merges the end of the "
        "prompt with the start of the answer (a generation prompt ending in a space, or an answer starting with "
        "whitespace), and training keeps the whole text's tokens"
    )
    if share > allowed:
        return False, (
            f"{finding}. More than the allowed {allowed:.0%}: the model would be trained on prompts it never "
            "sees. Use a template whose generation prompt ends with a newline or a special token "
            "(data.template), or strip the answers' leading whitespace."
        )
    return True, f"{finding}; within the allowed {allowed:.0%}"


def check_answer_tokens(stats: TokenizeStats) -> tuple[bool, str]:
    if stats.answer_mismatches:
        return False, (
            f"{len(stats.answer_mismatches)} of {stats.prompt_checked} samples (first: row "
            f"{stats.answer_mismatches[0]}) have trained tokens that do not decode to their answer text: the "
            "tokenizer cannot represent some characters (unknown tokens, normalisation), or it merges an answer "
            "with the text around it. Check those rows with `tuneforge data`; use a template that separates "
            "turns, or a tokenizer that covers your text."
        )
    return True, f"{stats.prompt_checked} samples' trained tokens decode to exactly their answers"


def check_truncation(stats: TokenizeStats, allowed: float) -> tuple[bool, str]:
    # Of the samples that have an answer (len(lengths)): rows with an empty one never become samples.
    samples = len(stats.lengths)
    share = stats.truncated / max(samples, 1)
    summary = f"{stats.truncated} of {samples:,} samples ({share:.1%}) are cut at train.max_length={stats.max_length}"
    if stats.no_trained_tokens:
        summary += f"; {stats.no_trained_tokens} of them lost their whole answer and were left out"
    if share <= allowed:
        return True, summary
    problem = (
        f"{summary}. More than the allowed {allowed:.0%}: cut answers teach the model to stop mid-sentence"
    )
    fits = covering_length(stats.p99_length)
    if stats.context_length and fits > stats.context_length:
        return False, (
            f"{problem}. 99% of samples need {fits} tokens but the model's context is {stats.context_length}: "
            "set data.too_long: drop to leave the longest out, shorten the data, or raise "
            "data.preflight.max_truncated_fraction."
        )
    return False, (
        f"{problem}. Set train.max_length: {fits} (covers 99% of samples) or auto, or raise "
        "data.preflight.max_truncated_fraction."
    )


def check_overlap(train: Dataset, eval_set: Dataset | None, separate_eval_file: bool) -> tuple[bool, str]:
    if eval_set is None:
        return True, "no evaluation set"
    seen = {tuple(ids) for ids in train["input_ids"]}
    shared = sum(tuple(ids) in seen for ids in eval_set["input_ids"])
    if shared:
        fix = (
            "Remove those rows from data.eval_path."
            if separate_eval_file
            else "Set data.dedupe: true (the data repeats rows), or give a separate data.eval_path."
        )
        return False, (
            f"{shared} of {len(eval_set)} evaluation samples also occur in training: held-out loss would be "
            f"optimistic. {fix}"
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
    has_prompts: bool,
    separate_eval_file: bool = False,
) -> list[CheckResult]:
    checks = {
        "eos": lambda: check_eos(train, eos_id),
        "trained_tokens": lambda: check_trained_tokens(stats),
        "double_bos": lambda: check_double_bos(train, bos_id),
        "prompt_match": lambda: check_prompt_match(stats, policy.max_prompt_mismatch_fraction),
        "answer_tokens": lambda: check_answer_tokens(stats),
        "truncation": lambda: check_truncation(stats, policy.max_truncated_fraction),
        "overlap": lambda: check_overlap(train, eval_set, separate_eval_file),
    }
    skip = () if has_prompts else ("prompt_match", "answer_tokens")
    return run_checks(policy, {name: check for name, check in checks.items() if name not in skip})


PARITY_PROBES: tuple[list, ...] = (
    [{"role": "user", "content": "Hello there."}],
    [
        {"role": "user", "content": "Count the lines."},
        {"role": "assistant", "content": "wc -l notes.txt"},
        {"role": "user", "content": "And the words?"},
    ],
)


def check_template_parity(encoder) -> tuple[bool, str]:
    """The run's prompts against transformers' standard rendering of the same saved template, on probe
    conversations; a probe the template cannot render is skipped (the data's own rows are checked later)."""
    for messages in PARITY_PROBES:
        try:
            ours, standard = encoder.prompt_ids(messages), encoder.standard_prompt_ids(messages)
        except (TuneforgeError, TemplateError):
            continue
        if ours != standard:
            bos = encoder.tokenizer.bos_token_id
            hint = (
                " The template writes no BOS, which the tokenizer puts before plain text: write {{ bos_token }} "
                "at its start (data.template)."
                if ours[:1] == [bos] and standard[:1] != [bos]
                else ""
            )
            return False, (
                f"apply_chat_template on the saved template builds {standard[:8]}... where training uses "
                f"{ours[:8]}...: an export, GGUF or Ollama would prompt the model differently.{hint}"
            )
    return True, "apply_chat_template builds the prompts training uses"


def run_checks(policy: PreflightConfig, checks: dict) -> list[CheckResult]:
    """Each check at its data.preflight severity; those turned off are not run."""
    results = []
    for name, check in checks.items():
        severity = getattr(policy, name)
        if severity != "off":
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
