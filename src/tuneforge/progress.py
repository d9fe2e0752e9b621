"""Progress of long phases (tokenizing, training, generating, scoring, export checks), shown one way
everywhere: a rich bar on a terminal or in a notebook; elsewhere (output to a file, CI, nohup, a captured
cell) plain lines, because a bar there shows nothing until the end. A plain line comes every
TUNEFORGE_PROGRESS_SECONDS seconds (default 15) while the phase runs, even when one step takes longer than
that, and a last one when it ends: done/total, rate, elapsed and ETA. A phase shorter than that prints
nothing, so quick steps do not fill a log.

    with Phase(console, "generating", total=len(prompts), unit="rows") as phase:
        for batch in batches:
            ...
            phase.advance(len(batch))
"""

from __future__ import annotations

import os
import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

EVERY_SECONDS = "TUNEFORGE_PROGRESS_SECONDS"


def every_seconds() -> float:
    return float(os.environ.get(EVERY_SECONDS, "15"))


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Phase:
    """One long phase's progress on `console` (None: silent). `total` None: only elapsed time is known."""

    def __init__(self, console: Console | None, label: str, total: int | None = None, unit: str = "rows"):
        self.console, self.label, self.total, self.unit = console, label, total, unit
        self.done, self.note = 0, ""
        self.started = time.perf_counter()
        self.bar: Progress | None = None
        self.stopped = threading.Event()
        self.spoke = False  # a plain line was printed, so the end gets one too
        self.heartbeat: threading.Thread | None = None

    @property
    def live(self) -> bool:
        """A rich bar redraws in place only on a terminal or in a notebook."""
        return self.console is not None and (self.console.is_terminal or self.console.is_jupyter)

    def __enter__(self) -> Phase:
        self.started = time.perf_counter()
        if self.console is None:
            return self
        if self.live:
            self.bar = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                # In Jupyter, rich's stream redirection writes a library's warning back through the console
                # it redirects without end (RecursionError); there the warning simply prints above the bar.
                redirect_stdout=not self.console.is_jupyter,
                redirect_stderr=not self.console.is_jupyter,
            )
            self.bar.start()
            self.bar.add_task(self.label, total=self.total, completed=self.done, note=self.note)
            return self
        self.heartbeat = threading.Thread(target=self.beat, daemon=True)
        self.heartbeat.start()
        return self

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count)

    def update(self, done: int | None = None, note: str | None = None) -> None:
        self.done = self.done if done is None else done
        self.note = self.note if note is None else note
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], completed=self.done, note=self.note)

    def status(self) -> str:
        elapsed = time.perf_counter() - self.started
        parts = [f"{duration(elapsed)} elapsed"]
        if self.note:
            parts.insert(0, self.note)
        if self.total is None:  # a phase that only knows it is still going
            return f"{self.label}: " + ", ".join(parts)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        counts = f"{self.done}/{self.total} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%)"
        parts[:0] = [counts, f"{rate:.2f} {self.unit}/s"]
        if rate > 0 and self.done < self.total:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        return f"{self.label}: " + ", ".join(parts)

    def beat(self) -> None:
        while not self.stopped.wait(every_seconds()):
            self.say(self.status())
            self.spoke = True

    def say(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stopped.set()
        if self.heartbeat is not None:
            self.heartbeat.join()
            if exc_type is None and self.spoke:
                self.say(self.status().replace(f"{self.label}: ", f"{self.label}: done, ", 1))
        if self.bar is not None:
            self.bar.stop()
