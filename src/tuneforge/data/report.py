"""What the data stage prints: the data summary with rendered samples, length histograms and preflight results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.prepared import PreparedData
from tuneforge.data.tokenize import covering_length, percentile


def capped_at_context(stats, requested: int | None) -> bool:
    """auto chose the model's context length because the length that covers 99% of samples is longer."""
    context = stats.context_length
    return requested is None and context is not None and covering_length(stats.p99_length) > context


def length_line(data: PreparedData, requested: int | None) -> str:
    """How train.max_length was set: the number, and for auto what it covers, or that the model's context
    capped it (then more than 1% of the samples are cut)."""
    stats = data.train_stats
    if requested is not None:
        return f"{stats.max_length}"
    if capped_at_context(stats, requested):
        return (
            f"auto -> {stats.max_length}, capped at the model's context length: 99% of samples fit in "
            f"{stats.p99_length} tokens, so the longer ones are cut (data.too_long: drop leaves them out)"
        )
    return f"auto -> {stats.max_length} (99% of samples fit in {stats.p99_length} tokens)"


def show_data(console: Console, data: PreparedData, tokenizer, requested_length: int | None) -> None:
    stats = data.train_stats
    lengths = sorted(stats.lengths)
    table = Table(title="data", show_header=False)
    table.add_row("shape", data.format)
    table.add_row("template", data.template_source)
    table.add_row(
        "tokenization", "reused from cache" if data.cache_hit else "tokenized now (cached for reuse)"
    )
    table.add_row("train rows", f"{stats.kept:,} kept of {stats.rows:,}")
    table.add_row("eval rows", eval_rows(data))
    table.add_row("max_length", length_line(data, requested_length))
    table.add_row(
        "tokens p50 / p95 / max (before the cut)",
        f"{percentile(lengths, 0.5)} / {percentile(lengths, 0.95)} / {lengths[-1]}",
    )
    table.add_row("dropped: empty completion", str(stats.empty_completion))
    table.add_row(f"truncated to {stats.max_length}", str(stats.truncated))
    table.add_row("dropped: answer cut off by max_length", str(stats.no_trained_tokens))
    table.add_row(
        "dropped: length filters", f"{stats.dropped_long} too long, {stats.dropped_short} too short"
    )
    console.print(table)
    console.print(
        rendered_sample(ChatEncoder(tokenizer), data.train[0]["input_ids"], data.train[0]["labels"])
    )


def eval_rows(data: PreparedData) -> str:
    """Held-out rows kept, and why the others were left out: a shrunken eval set changes what loss means."""
    stats = data.eval_stats
    if stats is None:
        return "none"
    lost = stats.rows - stats.kept
    why = (
        f" ({stats.empty_completion} empty, {stats.no_trained_tokens} answer cut off by max_length)"
        if lost
        else ""
    )
    return f"{stats.kept:,} kept of {stats.rows:,}{why}"


def rendered_sample(encoder: ChatEncoder, input_ids: list[int], labels: list[int]) -> Text:
    """One training sample as text; trained tokens in green, masked ones dim."""
    text = Text("sample (green = trained): ", style="bold")
    start = 0
    for end in range(1, len(input_ids) + 1):
        if end == len(input_ids) or (labels[end] != IGNORE) != (labels[start] != IGNORE):
            trained = labels[start] != IGNORE
            text.append(encoder.decode_span(input_ids, start, end), style="green" if trained else "dim")
            start = end
    return text


def histogram(lengths: list[int], bins: int = 10) -> list[tuple[int, int, int]]:
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // bins))
    counts = [0] * bins
    for n in lengths:
        counts[min((n - low) // width, bins - 1)] += 1
    return [(low + i * width, low + (i + 1) * width - 1, c) for i, c in enumerate(counts)]


def show_preflight(console: Console, results) -> None:
    table = Table(title="preflight", show_header=True)
    table.add_column("check")
    table.add_column("result")
    table.add_column("finding")
    for r in results:
        verdict = (
            "[green]pass[/]" if r.passed else ("[red]FAIL[/]" if r.severity == "error" else "[yellow]warn[/]")
        )
        table.add_row(r.name, verdict, r.message)
    console.print(table)
