"""GRPO's KL reference when it continues an SFT run (`model.adapter` with `grpo.beta > 0`): the SFT adapter
as the run started. Switching the adapter off would give the base, not the SFT model, so the trainable
weights are kept aside once (the adapter's size, never a second model) and swapped in, under no_grad, for
the reference pass.

    start = StartingWeights(model)          # before training (and before a resume loads its checkpoint)
    with start.swapped_in(model):
        reference = logps(model, ...)       # then the policy's pass, on the restored weights
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StartingWeights:
    def __init__(self, model: torch.nn.Module):
        self.start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        """The starting values in the trainable weights, the current ones back afterwards. Run the policy's
        forward after leaving it: weights changed in place under a graph would break its backward."""
        params = dict(model.named_parameters())
        current = {}
        with torch.no_grad():
            for name, start in self.start.items():
                current[name] = params[name].detach().clone()
                params[name].copy_(start)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in current.items():
                    params[name].copy_(value)
