"""The GRPO Trainer: each optimizer step takes `grpo.prompts_per_step` prompts, samples `group_size`
completions of each through the one inference engine, scores them with the rewards, turns the rewards into
advantages within each group, and follows the GRPO loss (`grpo_loss.py`, equal to TRL's) on them,
`train.batch_size` completions per forward/backward. With `grpo.iterations` above 1, one batch of rollouts
serves that many optimizer steps (`Generation`), the later ones against its sampling log-probs, and the
sampler (`RepeatedBatches`) hands each step of the group the same prompts.

The reference for the KL term (grpo.beta > 0) is the starting model with the adapter switched off: the same
weights, no second copy; continuing an SFT run, it is that run's adapter as training started (its values kept
aside and swapped in, starting_weights.py). Each rollout is sampled from its own seed, drawn from the run's
seed, the step and its prompt's place in the step's global batch, so a resumed run, and a run on any number of
processes, samples what one uninterrupted process samples.

Logged every logging step (and at each evaluation with the eval_ prefix): reward (total, its std and per
function), the share of groups whose rewards are all equal (no signal), completion length and the share
cut at max_completion_tokens, kl, clip ratios.
"""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from accelerate.data_loader import SeedableRandomSampler
from transformers import Trainer

from tuneforge.config.grpo import GrpoConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import engine_for_model
from tuneforge.train.grpo_loss import LossParts, group_advantages, grpo_loss
from tuneforge.train.grpo_rollout import (
    RepeatedBatches,
    completion_batch,
    completion_logps,
    completion_mask,
    rollout_seeds,
    sample,
    shared_prompt_logps,
    truncated,
)
from tuneforge.train.rewards import Reward, RewardScores, score_completions
from tuneforge.train.starting_weights import StartingWeights
from tuneforge.train.trainer import add_gathered, take_means


@dataclass
class Generation:
    """One batch of rollouts, and what each of the grpo.iterations optimizer passes over it needs."""

    prompts: list[list[int]]  # each completion's prompt ids
    completions: list[list[int]]
    advantages: torch.Tensor  # this process's, one per completion
    keep: list[float]  # 0.0: a truncated completion, masked
    tokens: float  # dapo's normaliser (counted_tokens)
    old_logps: list[torch.Tensor] | None = None  # per micro-batch, when grpo.iterations > 1

    def chunk(self, part: slice) -> tuple[list[list[int]], list[list[int]]]:
        return self.prompts[part], self.completions[part]


def rows_collator(rows: list[dict]) -> dict:
    """A step's prompt rows as they are: the rollout builds its own tensors."""
    return {"rows": rows}


class GrpoTrainer(Trainer):
    """`micro_batch`: completions per forward/backward (train.batch_size); `generation_prompts`: prompts
    whose groups are generated together (eval.batch_size)."""

    def __init__(
        self,
        *args,
        grpo: GrpoConfig,
        rewards: list[Reward],
        encoder: ChatEncoder,
        micro_batch: int,
        generation_prompts: int,
        reference_is_start: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.grpo, self.rewards, self.encoder = grpo, rewards, encoder
        # continuing an SFT adapter: the reference is that adapter as the run started, not the base
        self.start = StartingWeights(self.model) if reference_is_start and grpo.beta > 0 else None
        self.micro_batch, self.generation_prompts = micro_batch, generation_prompts
        self.generation: Generation | None = None  # the rollouts the current passes train on
        self.stats: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    def _get_train_sampler(self, train_dataset=None):
        """With grpo.iterations > 1, each step's prompts come again for that many steps (as TRL's
        RepeatSampler does), shuffled per epoch from the run's seed."""
        sampler = super()._get_train_sampler(train_dataset)
        if self.grpo.iterations == 1 or sampler is None:
            return sampler
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        global_batch = self.grpo.prompts_per_step * self.accelerator.num_processes
        return RepeatedBatches(
            SeedableRandomSampler(dataset, data_seed=seed), global_batch, self.grpo.iterations
        )

    # rollouts

    def decoding(self, greedy: bool = False) -> Decoding:
        if greedy:
            return Decoding(max_new_tokens=self.grpo.max_completion_tokens)
        return Decoding(
            max_new_tokens=self.grpo.max_completion_tokens,
            temperature=self.grpo.temperature,
            top_p=self.grpo.top_p,
        )

    @torch.no_grad()
    def complete(
        self, model, rows: list[dict], group_size: int, decoding: Decoding, seeds: list[int] | None = None
    ) -> list[list[int]]:
        was_training = model.training
        model.eval()
        engine = engine_for_model(self.accelerator.unwrap_model(model), self.encoder.tokenizer)
        batch = self.generation_prompts * group_size
        completions = sample(engine, [r["prompt_ids"] for r in rows], group_size, decoding, batch, seeds)
        model.train(was_training)
        return completions

    def score(self, rows: list[dict], completions: list[list[int]], group_size: int) -> RewardScores:
        texts = [self.encoder.tokenizer.decode(c, skip_special_tokens=True).strip() for c in completions]
        prompts = [row["prompt"] for row in rows for _ in range(group_size)]
        extra = [json.loads(row["row"]) for row in rows for _ in range(group_size)]
        return score_completions(self.rewards, prompts, texts, extra)

    # training

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Rollouts on the first of each grpo.iterations steps (the sampler repeats their prompts for the
        others), then one optimizer pass over them."""
        if self.state.global_step % self.grpo.iterations == 0 or self.generation is None:
            self.generation = self.generate(model, inputs["rows"])
        return self.optimise(model, self.generation)

    def generate(self, model, rows: list[dict]) -> Generation:
        group = self.grpo.group_size
        first = self.accelerator.process_index * len(rows)  # DDP hands each process its slice in turn
        seeds = rollout_seeds(self.args.seed, self.state.global_step, first, len(rows), group)
        completions = self.complete(model, rows, group, self.decoding(), seeds)
        scores = self.score(rows, completions, group)
        eos, budget = self.encoder.tokenizer.eos_token_id, self.grpo.max_completion_tokens
        cut = [truncated(c, eos, budget) for c in completions]
        keep = [0.0 if (self.grpo.mask_truncated and t) else 1.0 for t in cut]
        self.note_rollouts(scores, completions, cut, group)
        generation = Generation(
            prompts=[row["prompt_ids"] for row in rows for _ in range(group)],
            completions=completions,
            advantages=self.advantages(scores.total),
            keep=keep,
            tokens=self.counted_tokens(completions, keep),
        )
        if self.grpo.iterations > 1:  # the sampling policy's log-probs, for the later passes' ratios
            with torch.no_grad():
                generation.old_logps = [
                    self.logps(model, *generation.chunk(part)) for part in self.parts(generation)
                ]
        return generation

    def parts(self, generation: Generation) -> list[slice]:
        """The micro-batches: train.batch_size completions each."""
        size = self.micro_batch
        return [slice(start, start + size) for start in range(0, len(generation.completions), size)]

    def optimise(self, model, generation: Generation) -> torch.Tensor:
        model.train()
        total = torch.zeros((), device=self.args.device)
        parts = self.parts(generation)
        for index, part in enumerate(parts):
            mask = completion_mask(generation.completions[part]).to(self.args.device)
            mask = mask * torch.tensor(generation.keep[part], device=self.args.device)[:, None]
            old = generation.old_logps[index] if generation.old_logps else None
            with self.compute_loss_context_manager():
                found = self.chunk_loss(
                    model,
                    generation.chunk(part),
                    mask,
                    generation.advantages[part].to(self.args.device),
                    old,
                    generation.tokens,
                    len(parts),
                )
            self.accelerator.backward(found.loss)
            total += found.loss.detach()
            self.note_loss_parts(found)
        return total

    def advantages(self, totals: list[float]) -> torch.Tensor:
        """This process's advantages, computed over every process's rewards (scale_rewards: batch takes the
        std of the whole step's batch, as one process would)."""
        local = torch.tensor(totals, device=self.args.device)
        everyone = self.accelerator.gather(local) if self.accelerator.num_processes > 1 else local
        found = group_advantages(everyone.cpu(), self.grpo.group_size, self.grpo.scale_rewards)
        start = self.accelerator.process_index * len(totals)
        return found[start : start + len(totals)]

    @property
    def pad_id(self) -> int:
        tokenizer = self.encoder.tokenizer
        return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def counted_tokens(self, completions: list[list[int]], keep: list[float]) -> float:
        """dapo's normaliser: the completion tokens that count in this step on every process, divided by the
        number of processes, since DDP averages the processes' gradients (see grpo_loss)."""
        local = torch.tensor(sum(len(c) * k for c, k in zip(completions, keep)), device=self.args.device)
        processes = self.accelerator.num_processes
        if processes > 1:
            local = self.accelerator.reduce(local, reduction="sum")
        return float(local) / processes

    def chunk_loss(
        self, model, chunk, mask, advantages, old_logps, tokens: float, micro_batches: int
    ) -> LossParts:
        settings = self.grpo
        reference = None
        if settings.beta > 0:  # first: the policy's pass must see no weights swapped under its graph
            with torch.no_grad(), self.reference_model(model):
                reference = self.logps(model, *chunk)
        logps = self.logps(model, *chunk)
        return grpo_loss(
            logps,
            old_logps,  # None with one pass per batch of rollouts: the sampling policy is this one
            reference,
            advantages,
            mask,
            loss_type=settings.loss,
            epsilon_low=settings.epsilon,
            epsilon_high=settings.epsilon_high if settings.epsilon_high is not None else settings.epsilon,
            beta=settings.beta,
            max_completion_tokens=settings.max_completion_tokens,
            tokens_in_batch=tokens,
            micro_batches=micro_batches,
        )

    def logps(self, model, prompts: list[list[int]], completions: list[list[int]]) -> torch.Tensor:
        """Each completion token's log-prob. Chunks of whole groups run each prompt once (shared_prompt_logps,
        equal to the padded batch, tested); gradient checkpointing keeps no cache, so it takes the batch."""
        group, temperature = self.grpo.group_size, self.grpo.temperature
        checkpointing = getattr(self.accelerator.unwrap_model(model), "is_gradient_checkpointing", False)
        if self.micro_batch % group == 0 and not checkpointing:
            return shared_prompt_logps(model, prompts, completions, group, self.pad_id, temperature)
        batch = completion_batch(prompts, completions, self.pad_id).to(self.args.device)
        return completion_logps(model, batch, temperature)

    def reference_model(self, model):
        """The starting model: the same weights with the LoRA adapter switched off, or, continuing an SFT
        run, its adapter's starting values swapped in."""
        unwrapped = self.accelerator.unwrap_model(model)
        if self.start is not None:
            return self.start.swapped_in(unwrapped)
        return unwrapped.disable_adapter() if hasattr(unwrapped, "disable_adapter") else nullcontext()

    # metrics

    def note_loss_parts(self, parts: LossParts, split: str = "train") -> None:
        found = self.stats[split]
        found["clip_ratio/low"].append(float(parts.clip_low))
        found["clip_ratio/high"].append(float(parts.clip_high))
        if parts.kl is not None:
            found["kl"].append(float(parts.kl))

    def note_rollouts(
        self, scores: RewardScores, completions, cut: list[bool], group: int, split="train"
    ) -> None:
        found = self.stats[split]
        found["reward"] += scores.total
        for name, values in scores.per_reward.items():
            found[f"rewards/{name}"] += values
        totals = torch.tensor(scores.total).view(-1, group)
        found["reward_std"] += totals.std(dim=1).tolist()
        found["frac_reward_zero_std"] += (totals.std(dim=1) == 0).float().tolist()
        found["completions/mean_length"] += [float(len(c)) for c in completions]
        found["completions/clipped_ratio"] += [float(t) for t in cut]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the metrics gathered since the last log: means over every row of every process."""
        add_gathered(logs, self.stats, self.accelerator)
        super().log(logs, start_time)

    # evaluation

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Held-out prompts, one greedy completion each, scored by the rewards."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        rows = [dataset[i] for i in range(len(dataset))]
        completions = self.complete(self.model, rows, 1, self.decoding(greedy=True))
        scores = self.score(rows, completions, 1)
        found = self.stats["eval"]
        found["reward"] += scores.total
        for name, values in scores.per_reward.items():
            found[f"rewards/{name}"] += values
        found["completions/mean_length"] += [float(len(c)) for c in completions]
        means = take_means(self.stats, "eval", self.accelerator)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in means.items()}
        self.log(dict(metrics))
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
