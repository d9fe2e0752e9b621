"""Sampling with one random generator per row, so that a row's draws depend on its own seed only, never on
which other rows share its batch or in what order. (Its logits still come from a padded batch: in float32 on
CPU they agree to ~1e-6 across batch shapes, tested; in bf16 on a GPU other shapes can shift them enough to
change a draw now and then.) It draws from the tempered (and top-p) distribution alone: the model's
generation_config top-k is not applied.

GRPO's rollouts need this: with `--nproc 2` each process samples half of a step's groups, and they must be
the samples one process would draw for the whole step. transformers' own sampling draws a whole batch from
one generator, so we sample in a logits processor instead and leave a single finite score per row, which the
greedy pick then takes. Temperature and top-p are transformers' own warpers.

    processor = RowSeededSampler(seeds=[11, 12, 13], temperature=1.0, top_p=0.9)
    model.generate(..., do_sample=False, logits_processor=LogitsProcessorList([processor]))
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper


class RowSeededSampler(LogitsProcessor):
    """Row i of the batch draws each token from a generator seeded with `seeds[i]`."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.seeds, self.generators = seeds, None
        self.warpers = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.generators is None:  # on the first step, where the scores' device is known
            self.generators = [torch.Generator(scores.device).manual_seed(s) for s in self.seeds]
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = scores.float().softmax(dim=-1)
        picked = torch.stack(
            [torch.multinomial(row, 1, generator=g) for row, g in zip(probs, self.generators)]
        )
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, picked, 0.0)
