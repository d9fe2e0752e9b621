"""How to decode: the one set of generation settings every caller hands an engine (`tuneforge generate`,
`eval`, generation metrics during training, the export check, chat, the app and the server).

Greedy is temperature 0 (below 1e-3, in fact), the OpenAI convention the server already speaks; callers
with a separate sample switch (`generate --sample`, `eval.do_sample`) map it with `Decoding.switched`.
How many prompts share a batch is the engine's business, not the decoding's: it never changes what a
greedy row produces (batched output equals one-at-a-time output, tested).

    Decoding(max_new_tokens=64)                                # greedy
    Decoding(max_new_tokens=64, temperature=0.7, seed=1)       # sampled, repeatable
"""

from __future__ import annotations

from dataclasses import dataclass

# Dividing logits by a temperature this small overflows to inf and NaN, so it means greedy.
GREEDY_BELOW = 1e-3


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 128
    temperature: float = 0.0  # under GREEDY_BELOW: greedy
    top_p: float = 1.0  # sampling only
    seed: int | None = None  # sampling only; None draws from the process's random state
    stop: tuple[str, ...] = ()  # strings that end an answer, cut before them

    @property
    def sampled(self) -> bool:
        return self.temperature >= GREEDY_BELOW

    def describe(self) -> str:
        """In words, for reports: 'greedy, up to 64 new tokens'."""
        how = f"sampled (temperature {self.temperature:g}, top_p {self.top_p:g}, seed {self.seed})"
        return f"{how if self.sampled else 'greedy'}, up to {self.max_new_tokens} new tokens"

    @classmethod
    def switched(
        cls, *, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, seed: int | None
    ) -> Decoding:
        """Settings that keep a separate sample switch: off means greedy whatever the temperature says."""
        if not do_sample:
            return cls(max_new_tokens=max_new_tokens)
        return cls(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
