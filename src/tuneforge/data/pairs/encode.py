"""Encode preference rows through the one encoder, check each pair on the way, then apply max_length.

Each answer is encoded as its whole conversation (`ChatEncoder.encode_conversation`), exactly as SFT
encodes it, and only the final answer is trained: history answers are prompt here. Per row the checks
record: both branches have the same prompt ids (token-identical), that prompt equals the one inference
builds (`ChatEncoder.prompt_ids`), no answer is empty, and, once cut at max_length, the branches still
differ and each keeps a trained token.

    pairs, stats = encode_preferences(items, encoder, max_length=None, context_length=2048, source="train")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset
from rich import get_console

from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.pairs.rows import PreferenceItem
from tuneforge.data.tokenize import AUTO_LENGTH_COVERS, auto_max_length, percentile
from tuneforge.errors import TuneforgeError
from tuneforge.progress import Phase


@dataclass
class PairStats:
    source: str = "data"  # the file (or split) the rows came from, for messages
    rows: int = 0
    kept: int = 0
    max_length: int = 0
    context_length: int | None = None
    p99_length: int = 0
    lengths: list[int] = field(default_factory=list)  # longest branch of each row, before the cut
    truncated: int = 0
    empty: list[int] = field(default_factory=list)  # row numbers with an empty answer
    cut_empty: list[int] = field(default_factory=list)  # rows whose answer the cut removed entirely
    prompt_differs: list[int] = field(default_factory=list)  # chosen and rejected prompt ids differ
    prompt_mismatches: list[int] = field(default_factory=list)  # prompt ids differ from inference's
    identical: list[int] = field(default_factory=list)  # the same tokens in both branches after the cut
    identical_before_cut: int = 0  # of those, identical in the data already
    desirable: int = 0  # kto rows labelled desirable (kept)

    @property
    def no_trained_tokens(self) -> int:  # as TokenizeStats names it, for the shared truncation check
        return len(self.cut_empty)


@dataclass(frozen=True)
class Branch:
    input_ids: list[int]
    labels: list[int]
    prompt_length: int  # ids before the trained answer


def encode_branch(encoder: ChatEncoder, item: PreferenceItem, answer: int) -> Branch:
    sample = encoder.encode_conversation(item.conversation(answer))
    final = sample.answers[-1]
    labels = [IGNORE] * final.start + sample.input_ids[final.start : final.end]
    labels += [IGNORE] * (len(sample.input_ids) - final.end)
    return Branch(sample.input_ids, labels, final.start)


def encode_preferences(
    items: list[PreferenceItem],
    encoder: ChatEncoder,
    *,
    max_length: int | None,
    context_length: int | None,
    source: str,
    numbers: list[int] | None = None,
) -> tuple[Dataset, PairStats]:
    """Rows with an empty answer are left out (and counted); everything else is encoded and checked."""
    stats = PairStats(source=source, context_length=context_length)
    encoded: list[tuple[int, PreferenceItem, list[Branch]]] = []
    numbers = numbers if numbers is not None else list(range(len(items)))
    with Phase(get_console(), f"tokenizing {source}", total=len(items)) as phase:
        for row, item in zip(numbers, items):
            phase.advance()
            stats.rows += 1
            if any(not answer.strip() for answer in item.answers):
                stats.empty.append(row)
                continue
            branches = [encode_branch(encoder, item, i) for i in range(len(item.answers))]
            prompts = [b.input_ids[: b.prompt_length] for b in branches]
            if any(p != prompts[0] for p in prompts):
                stats.prompt_differs.append(row)
            if prompts[0] != encoder.prompt_ids(item.prompt):
                stats.prompt_mismatches.append(row)
            encoded.append((row, item, branches))
    if not encoded:
        raise TuneforgeError(f"{source}: no row has a non-empty answer ({stats.rows} rows read)")
    stats.lengths = [max(len(b.input_ids) for b in branches) for _, _, branches in encoded]
    stats.p99_length = percentile(sorted(stats.lengths), AUTO_LENGTH_COVERS)
    stats.max_length = max_length or auto_max_length(stats.lengths, context_length)
    return cut_to_length(encoded, stats), stats


def cut_to_length(encoded: list[tuple[int, PreferenceItem, list[Branch]]], stats: PairStats) -> Dataset:
    limit = stats.max_length
    names = ("chosen", "rejected") if len(encoded[0][2]) == 2 else ("completion",)
    out: dict[str, list] = {f"{n}_{k}": [] for n in names for k in ("input_ids", "labels")}
    out |= {"length": [], "row": []} | ({"desirable": []} if names == ("completion",) else {})
    for row, item, branches in encoded:
        stats.truncated += any(len(b.input_ids) > limit for b in branches)
        cut = [(b.input_ids[:limit], b.labels[:limit]) for b in branches]
        if any(all(label == IGNORE for label in labels) for _, labels in cut):
            stats.cut_empty.append(row)
            continue
        if len(cut) == 2 and cut[0][0] == cut[1][0]:
            stats.identical.append(row)
            stats.identical_before_cut += branches[0].input_ids == branches[1].input_ids
            continue
        for name, (ids, labels) in zip(names, cut):
            out[f"{name}_input_ids"].append(ids)
            out[f"{name}_labels"].append(labels)
        out["length"].append(max(len(ids) for ids, _ in cut))
        out["row"].append(row)
        if item.desirable is not None:
            out["desirable"].append(item.desirable)
            stats.desirable += item.desirable
    stats.kept = len(out["row"])
    return Dataset.from_dict(out)
