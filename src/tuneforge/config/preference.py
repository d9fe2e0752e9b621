"""Config section `preference`: the knobs of preference tuning (train.method dpo, simpo, orpo or kto).

Rows come in one of two shapes, read by their columns (data.columns.*):
- pairs (dpo, simpo, orpo): prompt + chosen + rejected; the prompt is a string or a message list (history
  included), the answers strings or message lists ending with the assistant turn;
- kto: prompt + completion + label (true = desirable, false = undesirable).
"""

from __future__ import annotations

from pydantic import Field

from tuneforge.config.section import Section


class PreferenceConfig(Section):
    beta: float | None = Field(
        None,
        gt=0,
        description="dpo and kto: how far the policy may move from the reference. simpo: the reward scale. "
        "orpo: the weight of the odds-ratio term beside the SFT loss. Unset: the method's usual value "
        "(dpo, kto, orpo 0.1; simpo 2.0).",
    )
    simpo_gamma: float = Field(
        0.5, ge=0, description="simpo: the target reward margin between chosen and rejected."
    )
    kto_desirable_weight: float = Field(
        1.0, gt=0, description="kto: loss weight of desirable rows (raise it when they are the fewer)."
    )
    kto_undesirable_weight: float = Field(1.0, gt=0, description="kto: loss weight of undesirable rows.")
