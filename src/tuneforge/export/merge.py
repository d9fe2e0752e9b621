"""The merged model an export writes: the run's adapter folded into its base.

A base trained in 4 or 8 bits is reloaded unquantized, in the compute dtype, and the adapter merged into
those weights (the QLoRA paper's recipe). Merging into the quantized weights would round the sum back to
4 bits, which is why peft's trackers report merged 4-bit models answering worse than their adapter did.
So a QLoRA export differs from the evaluated model (adapter on the 4-bit base) by the base's quantization
error; `export_check.json` reports that difference beside the one that must be ~0.

`--merge-base dequantized` merges into the 4-bit weights dequantized to the compute dtype instead: the
export then computes what was trained and evaluated (the adapter learned to work with those weights),
at the price of keeping the 4-bit rounding in 16- or 32-bit weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from peft import PeftModel

from tuneforge.errors import TuneforgeError
from tuneforge.model.load import DTYPES

MergeBase = Literal["unquantized", "dequantized"]


def merge(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """Fold the adapter into the base weights and cast to `dtype` ("auto": the weights' own dtype)."""
    if isinstance(model, PeftModel):
        # safe_merge checks every merged weight for NaN/inf before keeping it.
        try:
            model = model.merge_and_unload(safe_merge=True)
        except ValueError as exc:
            raise TuneforgeError(f"the merged weights are not finite: {exc}") from exc
    if dtype != "auto":
        model = model.to(DTYPES[dtype])
    return model
