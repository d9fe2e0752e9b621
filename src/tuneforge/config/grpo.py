"""Config section `grpo`: the knobs of GRPO (train.method grpo) and the rewards it learns from.

Each step samples `group_size` completions for each of `prompts_per_step` prompts, scores every completion
with the rewards listed here, and pushes the policy towards the completions that scored above their
group's mean. Defaults follow TRL 1.16's GRPOConfig unless a description says otherwise.

    grpo:
      rewards:
        - {kind: exact_match, column: answer}
        - {kind: regex, pattern: "^<answer>.*</answer>$", weight: 0.2}
        - {kind: python, file: rewards/unit_tests.py, function: passes}
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.config.section import Section

METRIC_KINDS = ("exact_match", "normalized_exact_match", "chrf", "rougeL", "bleu")
# The keys each kind reads; any other kind must leave them at their defaults (a stray key is a mistake).
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "column": METRIC_KINDS,
    "pattern": ("regex",),
    "max_words": ("length",),
    "file": ("python",),
    "function": ("python",),
}
# The key each kind cannot work without, and an example of it for the error message.
REQUIRED_KEY = {
    "regex": ("pattern", "a regular expression, e.g. pattern: '^\\d+$'"),
    "length": ("max_words", "the longest answer that keeps full reward, e.g. max_words: 200"),
    "python": ("file", "the .py file that defines your function, e.g. file: my_rewards.py"),
}


class RewardConfig(Section):
    kind: Literal[
        "exact_match", "normalized_exact_match", "chrf", "rougeL", "bleu", "regex", "length", "python"
    ] = Field(
        description="What scores a completion. exact_match, normalized_exact_match, chrf, rougeL, bleu: the "
        "generation metric of tuneforge eval against the row's reference (column), on 0..1 instead of 0..100. "
        "regex: 1.0 when pattern matches, else 0.0. length: a penalty for long answers (max_words). python: "
        "your own function (file, function)."
    )
    weight: float = Field(
        1.0,
        description="Multiplier of this reward in the total that training maximises. Negative penalises what "
        "it scores (e.g. a regex for a phrase you do not want); 0 logs it without training on it.",
    )
    name: str | None = Field(
        None,
        pattern=r"^[\w.-]+$",
        description="Label in logs and metrics (letters, digits, _ . -). Unset: the kind, or for python the "
        "function's name. Two rewards may not share one.",
    )
    column: str = Field(
        "reference",
        min_length=1,
        description="Metric kinds: the row's column holding the reference answer, a string or a list of "
        "strings (the best one counts for exact match and ROUGE; BLEU and chrF take them all, as in eval).",
    )
    pattern: str | None = Field(
        None,
        description="regex: a Python regular expression searched for anywhere in the completion (re.search; "
        "anchor it with ^ and $, add flags inline, e.g. (?s) or (?i)). Checked when the config loads.",
    )
    max_words: int | None = Field(
        None,
        ge=1,
        description="length: answers of up to this many words (split on whitespace) score 0; longer ones "
        "lose linearly, reaching -1 at twice the limit and staying there (DAPO's soft overlong penalty, in "
        "words). Give it a positive weight.",
    )
    file: str | None = Field(
        None,
        description="python: the .py file defining the function; relative paths are read from the directory "
        "you run tuneforge in, as data paths are. It runs in the training process: it is your code.",
    )
    function: str = Field(
        "reward",
        pattern=r"^[A-Za-z_]\w*$",
        description="python: the function's name in file, called as function(prompts, completions, rows) -> "
        "one float per completion (rows: each completion's data row, as a dict).",
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _keys_fit_kind(self) -> RewardConfig:
        for key, kinds in KIND_KEYS.items():
            # compared with the default, not model_fields_set: a saved config writes every key back
            if self.kind not in kinds and getattr(self, key) != type(self).model_fields[key].default:
                raise ValueError(
                    f"{key} is read only by kind {' or '.join(kinds)}; kind {self.kind} does not use it: "
                    "remove it"
                )
        needed, example = REQUIRED_KEY.get(self.kind, (None, ""))
        if needed is not None and getattr(self, needed) is None:
            raise ValueError(f"kind {self.kind} needs {needed}: {example}")
        return self

    @property
    def label(self) -> str:
        """The name shown in logs: name, else the function's name (python), else the kind."""
        if self.name is not None:
            return self.name
        return self.function if self.kind == "python" else self.kind


class GrpoConfig(Section):
    group_size: int = Field(
        8,
        ge=2,
        description="Completions sampled per prompt; each is judged against its group's mean. TRL's "
        "num_generations, default 8.",
    )
    prompts_per_step: int = Field(
        2,
        ge=1,
        description="Prompts per optimizer step, each with group_size completions. TRL derives it from its "
        "batch sizes (8 x 1 / 8 = 1 prompt per device with its defaults); 2 here so a step sees two groups.",
    )
    max_completion_tokens: int = Field(
        512, ge=1, description="Longest sampled completion. TRL's max_completion_length, default 512."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature. TRL's default 1.0.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass. TRL's default 1.0.")
    iterations: int = Field(
        1,
        ge=1,
        description="Optimizer steps over each batch of sampled completions (later ones against the sampling "
        "policy's log-probs, clipped). TRL's num_iterations, default 1. train.save_steps and max_steps must be "
        "multiples of it, so a checkpoint never falls inside a batch.",
    )
    beta: float = Field(
        0.0,
        ge=0,
        description="Weight of the KL penalty against the reference: the starting model (the adapter "
        "switched off, or the model.adapter it continues), never a second copy. TRL's default 0.0 (no KL "
        "term); DeepSeek-R1 used 0.001.",
    )
    epsilon: float = Field(
        0.2,
        gt=0,
        description="Clip range below: the policy ratio is clipped at 1 - epsilon. TRL's default 0.2.",
    )
    epsilon_high: float | None = Field(
        None,
        gt=0,
        description="Clip range above (1 + epsilon_high). Unset: epsilon, TRL's default. DAPO recommends 0.28.",
    )
    loss: Literal["grpo", "dr_grpo", "dapo"] = Field(
        "dapo",
        description="How token losses are averaged. grpo: per completion, then over completions (favours "
        "short right answers and long wrong ones). dr_grpo: divided by a constant (max_completion_tokens). "
        "dapo: over all completion tokens of the step. TRL's loss_type, default dapo.",
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group",
        description="Divide advantages by the reward standard deviation of the group, of the batch, or not at "
        "all (Dr. GRPO: group scaling biases towards too-easy and too-hard prompts). TRL's default group.",
    )
    mask_truncated: bool = Field(
        True,
        description="Completions cut at max_completion_tokens get no loss: unfinished, their reward says "
        "little about their tokens. TRL's mask_truncated_completions defaults to off; on here as DAPO "
        "recommends. If most are cut, raise max_completion_tokens.",
    )
    rewards: list[RewardConfig] = Field(
        default_factory=list,
        description="What training maximises: the weighted sum of these scores for each completion. GRPO "
        "needs at least one.",
    )

    @field_validator("rewards")
    @classmethod
    def _unique_names(cls, rewards: list[RewardConfig]) -> list[RewardConfig]:
        problem = duplicate_names(rewards)
        if problem:
            raise ValueError(problem)
        return rewards


def duplicate_names(rewards: list[RewardConfig]) -> str | None:
    """Why the rewards' labels collide in logs (naming both), or None when they are all distinct."""
    first: dict[str, int] = {}
    for index, reward in enumerate(rewards):
        if reward.label in first:
            return (
                f"rewards {first[reward.label]} and {index} are both named {reward.label!r} (their metrics "
                "would collide): give one a different name"
            )
        first[reward.label] = index
    return None


def rewards_refusal(grpo: GrpoConfig) -> str | None:
    """Why GRPO cannot train with these rewards (for a recipe's `refuse`), or None when it can."""
    if not grpo.rewards:
        return (
            "grpo.rewards is empty: GRPO learns only from rewards; add at least one, e.g. "
            "grpo.rewards: [{kind: exact_match, column: answer}]"
        )
    if all(reward.weight == 0 for reward in grpo.rewards):
        return "every grpo.rewards weight is 0: nothing would be learned; give at least one a nonzero weight"
    return None
