"""GRPO rollouts: a step's prompts -> `group_size` sampled completions each, through the one inference
engine (so a rollout is prompted and decoded as `tuneforge generate` does), then the completions' per-token
log-probs under the model being trained.

A batch of completions is laid out with each prompt padded on the left and each completion on the right,
so every completion starts in the same column: the logits that predict it are one slice, and the position
ids (counted over real tokens) are those generation used.

    ids = sample(engine, prompts, group_size=8, decoding=Decoding(max_new_tokens=64, temperature=1.0))
    batch = completion_batch(repeated_prompts, ids, pad_id)
    logps = completion_logps(model, batch, temperature=1.0)   # (completions, longest completion)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from tuneforge.infer.decoding import Decoding


def sample(
    engine,
    prompts: list[list[int]],
    group_size: int,
    decoding: Decoding,
    batch_size: int,
    seeds: list[int] | None = None,
) -> list[list[int]]:
    """Completions group after group: prompt 0's `group_size` first, then prompt 1's, ...; `seeds`: one
    per completion (rollout_seeds), or None to sample from the decoding's seed."""
    repeated = [ids for ids in prompts for _ in range(group_size)]
    return engine.generate(repeated, decoding=decoding, batch_size=batch_size, seeds=seeds)


def rollout_seeds(run_seed: int, step: int, first_prompt: int, prompts: int, group_size: int) -> list[int]:
    """A seed for each completion of a step, from the run's seed, the step and the prompt's place in the
    step's global batch (`first_prompt` is this process's first): a resumed run, and any number of
    processes, sample what one uninterrupted process samples."""
    base = (run_seed * 1_000_003 + step) * 1_000_033
    return [(base + (first_prompt + p) * 1009 + j) % 2**63 for p in range(prompts) for j in range(group_size)]


class RepeatedBatches(torch.utils.data.Sampler):
    """`base`'s order, each run of `batch` indices (one optimizer step's prompts on every process) given
    `repeats` times in a row: GRPO's passes over one batch of rollouts see the prompts it was drawn for."""

    def __init__(self, base: torch.utils.data.Sampler, batch: int, repeats: int):
        self.base, self.batch, self.repeats = base, batch, repeats

    def __iter__(self):
        order = list(self.base)
        for start in range(0, len(order), self.batch):
            chunk = order[start : start + self.batch]
            chunk += order[: self.batch - len(chunk)]  # a short last batch is topped up from the start
            for _ in range(self.repeats):
                yield from chunk

    def __len__(self) -> int:
        return -(-len(self.base) // self.batch) * self.batch * self.repeats

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)


def truncated(completion: list[int], eos_id: int, max_new_tokens: int) -> bool:
    """Cut at the token budget before the model ended it (no EOS)."""
    return eos_id not in completion and len(completion) >= max_new_tokens


@dataclass
class CompletionBatch:
    input_ids: torch.Tensor  # (B, P + T): prompts left-padded to P, completions right-padded to T
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    completion_mask: torch.Tensor  # (B, T): 1 on completion tokens

    @property
    def completion_length(self) -> int:
        return self.completion_mask.shape[1]

    def to(self, device) -> CompletionBatch:
        return CompletionBatch(*(t.to(device) for t in vars(self).values()))


def completion_mask(completions: list[list[int]]) -> torch.Tensor:
    """(B, T): 1 on each completion's tokens, 0 on the right padding (as CompletionBatch.completion_mask)."""
    width = max(1, max(len(c) for c in completions))
    return torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in completions])


def completion_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> CompletionBatch:
    width_p = max(len(p) for p in prompts)
    width_c = max(1, max(len(c) for c in completions))
    ids = torch.full((len(prompts), width_p + width_c), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        start = width_p - len(prompt)
        ids[row, start:width_p] = torch.tensor(prompt)
        ids[row, width_p : width_p + len(completion)] = torch.tensor(completion, dtype=torch.long)
        mask[row, start : width_p + len(completion)] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return CompletionBatch(ids, mask, positions, mask[:, width_p:].clone())


def keeps_logits(model) -> bool:
    """Whether the model can compute the head on the last positions only (most transformers LMs can)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def completion_logps(model, batch: CompletionBatch, temperature: float) -> torch.Tensor:
    """(B, T) log-probability of each completion token under `model`, from logits divided by the sampling
    temperature (as TRL scores them: the distribution the tokens were drawn from). Padding positions hold
    values to be masked out."""
    width_c = batch.completion_length
    extra = {"logits_to_keep": width_c + 1} if keeps_logits(model) else {}
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
        **extra,
    ).logits
    logits = logits[:, -(width_c + 1) : -1].float() / temperature
    targets = batch.input_ids[:, -width_c:]
    # the picked logit minus the log-normaliser: no second (B, T, vocab) tensor of log-probs
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def shared_prompt_logps(
    model,
    prompts: list[list[int]],
    completions: list[list[int]],
    group_size: int,
    pad_id: int,
    temperature: float,
) -> torch.Tensor:
    """`completion_logps` for whole groups, each prompt run once: its keys and values (with their graph,
    so the gradient through the prompt is the same) are repeated for the group's completions. The same
    numbers as the padded batch with every prompt repeated, for about (group_size - 1) / group_size less
    prompt compute in the forward and the backward (tests/test_grpo.py, bench/grpo_step.py)."""
    heads = prompts[::group_size]
    width_p = max(len(p) for p in heads)
    width_c = max(1, max(len(c) for c in completions))
    device = next(model.parameters()).device
    ids_p = torch.full((len(heads), width_p), pad_id, dtype=torch.long)
    mask_p = torch.zeros_like(ids_p)
    for row, prompt in enumerate(heads):
        ids_p[row, width_p - len(prompt) :] = torch.tensor(prompt)
        mask_p[row, width_p - len(prompt) :] = 1
    mask_c = completion_mask(completions)
    ids_c = torch.full_like(mask_c, pad_id)
    for row, completion in enumerate(completions):
        ids_c[row, : len(completion)] = torch.tensor(completion, dtype=torch.long)
    ids_p, mask_p, ids_c, mask_c = (t.to(device) for t in (ids_p, mask_p, ids_c, mask_c))
    first = model(
        input_ids=ids_p,
        attention_mask=mask_p,
        position_ids=(mask_p.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        **({"logits_to_keep": 1} if keeps_logits(model) else {}),  # only the last predicts a completion
    )
    cache = first.past_key_values
    cache.batch_repeat_interleave(group_size)
    mask_p = mask_p.repeat_interleave(group_size, dim=0)
    rest = model(
        input_ids=ids_c,
        attention_mask=torch.cat([mask_p, mask_c], dim=1),
        position_ids=mask_p.sum(-1, keepdim=True) + torch.arange(width_c, device=device),
        past_key_values=cache,
        use_cache=True,
    ).logits
    head = first.logits[:, -1:].repeat_interleave(group_size, dim=0)  # predicts each first token
    logits = torch.cat([head, rest[:, :-1]], dim=1).float() / temperature
    return logits.gather(-1, ids_c.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
