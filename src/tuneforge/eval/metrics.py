"""Generation metrics from maintained libraries: ROUGE from `rouge-score`, BLEU and chrF from `sacrebleu`,
and exact match; for answers that call tools, tool-call exact match (names and arguments equal as JSON
values) and tool-name match, over the rows whose reference calls a tool. Every score is on a 0-100 scale; a
row may have several references (the best one counts for exact match, ROUGE and the tool-call metrics;
BLEU and chrF take them all, as sacrebleu does). Predictions and references are texts as
`tool_format.Answer.scored` writes them: the answer's text, then its calls in the canonical format.

    compute_metrics(["rougeL", "exact_match"], predictions, [[ref] for ref in references])
"""

from __future__ import annotations

import re
import statistics
import string
from collections.abc import Sequence

from tuneforge.config.schema import METRIC_NAMES
from tuneforge.data.tool_format import parse_calls, same_calls

SHORT_ANSWER_WORDS = 10
ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    hits = sum(any(p.strip() == r.strip() for r in refs) for p, refs in zip(predictions, references))
    return 100 * hits / max(len(predictions), 1)


def normalized_exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    hits = sum(any(normalize(p) == normalize(r) for r in refs) for p, refs in zip(predictions, references))
    return 100 * hits / max(len(predictions), 1)


def tool_calls_match(
    predictions: Sequence[str], references: Sequence[Sequence[str]], names_only: bool = False
) -> float:
    """Share of the rows whose reference calls a tool where the prediction makes the same calls in order."""
    rows = [(p, [parse_calls(r) for r in refs]) for p, refs in zip(predictions, references)]
    rows = [(p, calls) for p, calls in rows if any(calls)]
    hits = sum(any(same_calls(parse_calls(p), c, names_only) for c in calls if c) for p, calls in rows)
    return 100 * hits / max(len(rows), 1)


def rouge(kind: str, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean F-measure; rouge-score's own defaults (no stemming), the best reference per row."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([kind])
    scores = [scorer.score_multi(list(refs), p)[kind].fmeasure for p, refs in zip(predictions, references)]
    return 100 * sum(scores) / max(len(scores), 1)


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu wants one list per reference position; rows with fewer references leave a None."""
    depth = max(len(refs) for refs in references)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(depth)]


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), reference_streams(references)).score


def chrf(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    import sacrebleu

    return sacrebleu.corpus_chrf(list(predictions), reference_streams(references)).score


def compute_metrics(
    names: Sequence[str], predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRIC_NAMES)}")
    if not predictions:
        return {}
    by_name = {
        "exact_match": lambda: exact_match(predictions, references),
        "normalized_exact_match": lambda: normalized_exact_match(predictions, references),
        "rouge1": lambda: rouge("rouge1", predictions, references),
        "rouge2": lambda: rouge("rouge2", predictions, references),
        "rougeL": lambda: rouge("rougeL", predictions, references),
        "bleu": lambda: bleu(predictions, references),
        "chrf": lambda: chrf(predictions, references),
        "tool_call_exact_match": lambda: tool_calls_match(predictions, references),
        "tool_name_match": lambda: tool_calls_match(predictions, references, names_only=True),
    }
    return {name: by_name[name]() for name in names}


def default_metrics(references: Sequence[Sequence[str]]) -> list[str]:
    """Short answers (commands, labels) are judged by exact match; longer ones (summaries) by overlap; answers
    that call tools by their calls first."""
    if not references:
        return []
    calls = ["tool_call_exact_match", "tool_name_match"] if any(parse_calls(r[0]) for r in references) else []
    median_words = statistics.median(len(refs[0].split()) for refs in references)
    if median_words <= SHORT_ANSWER_WORDS:
        return [*calls, "exact_match", "normalized_exact_match", "chrf"]
    return [*calls, "rouge1", "rouge2", "rougeL", "bleu"]
