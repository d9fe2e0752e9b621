"""Config section `data.preflight`: how strictly each check on the tokenized data is enforced."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.config.section import Section

Severity = Literal["error", "warn", "off"]


class PreflightConfig(Section):
    eos: Severity = Field(
        "error",
        description="Every answer ends with a trained EOS token: the template writes eos_token after it.",
    )
    trained_tokens: Severity = Field(
        "error", description="No row has an empty answer (nothing to train; such rows are left out)."
    )
    double_bos: Severity = Field("error", description="No sample starts with two BOS tokens.")
    template_parity: Severity = Field(
        "error",
        description="transformers' apply_chat_template on the saved template (what exports, GGUF and Ollama "
        "runtimes use) builds the prompt ids training uses.",
    )
    prompt_match: Severity = Field(
        "error",
        description="The tokens before each trained answer equal, token for token, the prompt inference builds "
        "for that conversation (fails above max_prompt_mismatch_fraction).",
    )
    answer_tokens: Severity = Field(
        "error", description="The trained tokens of each answer decode to exactly the answer's rendered text."
    )
    truncation: Severity = Field(
        "error",
        description="At most max_truncated_fraction of samples are cut by max_length (counting those that lose "
        "their whole answer and are left out).",
    )
    overlap: Severity = Field("warn", description="Evaluation samples that also occur in training.")
    pair_prompt: Severity = Field(
        "error",
        description="Preference pairs: chosen and rejected are trained after the same prompt, token for token.",
    )
    pair_differs: Severity = Field(
        "error",
        description="Preference pairs: chosen and rejected still differ after the cut at max_length.",
    )
    empty_branch: Severity = Field(
        "error",
        description="Preference rows: no empty answer, and none whose every token the cut at max_length removes.",
    )
    max_truncated_fraction: float = Field(
        0.05, ge=0, le=1, description="Allowed share of samples cut by max_length."
    )
    max_prompt_mismatch_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Allowed share of samples whose training prompt differs from the inference prompt (the "
        "boundary rule in docs/concepts/encoder.md: a few answers that start with unusual whitespace are expected).",
    )
