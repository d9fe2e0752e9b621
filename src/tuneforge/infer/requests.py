"""One request to an engine, whatever the backend: its prompt ids, decoding and sink, and the rules that
turn the tokens it gets into streamed text. A row ends at an EOS id, at the earliest of its stop strings,
at its token budget, when it is cancelled or when its deadline passes; the streamed pieces add up to the
final answer, never show a stop string and never split a character (tests/test_engine.py).

    job = Job(served, prompt_ids, Decoding(stop=("\n",)), sink=print, deadline=time.monotonic() + 60)
    done = job.step(token)   # a backend calls this with each new token
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tuneforge.errors import TuneforgeError
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.load import Served


class Busy(TuneforgeError):
    """More requests in flight than serve.max_concurrent_requests."""


@dataclass
class Event:
    """What the worker tells a request: new text, and at the end why it stopped and the token counts."""

    delta: str
    finish_reason: str | None = None  # stop, length, timeout, cancelled, error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass(eq=False)
class Job:
    served: Served
    prompt_ids: list[int]
    decoding: Decoding
    sink: Callable[[Event], None]
    deadline: float
    ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the answer already streamed
    finished: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    answer: str = ""  # the answer decoded so far, leading whitespace dropped (see `read_new`)
    searched: int = 0  # characters of `answer` already searched for stop strings
    window: tuple[int, int] = (0, 0)  # ids[a:b] were decoded last; their text is the next piece's context

    def batch_key(self) -> tuple:
        """Requests with equal keys may share a batch: same weights and sampling settings (an engine
        that cannot mix adapters in one batch adds the adapter)."""
        d = self.decoding
        sampling = (d.temperature, d.top_p, id(self) if d.seed is not None else None) if d.sampled else ()
        return (self.served.weights, *sampling)

    def cancel(self) -> None:
        self.cancelled.set()

    def step(self, token: int) -> bool:
        """Take one new token; returns True when the answer is complete."""
        if token in self.served.stop_ids:
            return self.finish("stop", self.ids + [token])
        self.ids.append(token)
        text = self.read_new()
        found = self.first_stop(text)
        if found is not None:
            return self.finish("stop", self.ids, cut=found)
        if len(self.ids) >= self.decoding.max_new_tokens:
            return self.finish("length", self.ids)
        if self.cancelled.is_set():
            return self.finish("cancelled", self.ids)
        if time.monotonic() > self.deadline:
            return self.finish("timeout", self.ids)
        ready = streamable(text, self.decoding.stop)
        if ready > self.sent:
            self.sink(Event(text[self.sent : ready]))
            self.sent = ready
        return False

    def read_new(self, flush: bool = False) -> str:
        """The answer with the new tokens, decoding only them and the last piece's tokens (their context:
        a word's leading space, the rest of a character) instead of the whole answer every step, which
        would cost time quadratic in its length. A piece that ends in half a character waits for the next
        token, unless `flush`. Adds up to `generate`'s decoding (tests/test_engine.py)."""
        start, read = self.window
        tokenizer = self.served.encoder.tokenizer
        before = tokenizer.decode(self.ids[start:read], skip_special_tokens=True) if read > start else ""
        after = tokenizer.decode(self.ids[start:], skip_special_tokens=True)
        if len(after) > len(before) and (flush or not after.endswith("\ufffd")):
            piece = after[len(before) :]
            self.answer += piece if self.answer else piece.lstrip()
            self.window = (read, len(self.ids))
        return self.answer

    def first_stop(self, text: str) -> int | None:
        """Where the earliest stop string starts; only the new text (and a stop's length before it) is
        searched, since the answer so far held none."""
        found = [
            at
            for stop in self.decoding.stop
            if (at := text.find(stop, max(0, self.searched - len(stop) + 1))) >= 0
        ]
        self.searched = len(text)
        return min(found) if found else None

    def text(self) -> str:
        """The whole answer so far, as `generate` decodes it (special tokens out, leading space dropped)."""
        return self.read_new(flush=True)

    def finish(
        self, reason: str, produced: list[int], cut: int | None = None, error: str | None = None
    ) -> bool:
        if self.finished:
            return True
        self.finished = True
        text = self.text()
        if cut is None:  # a stop may sit in the last piece, held back while it ended in half a character
            cut = self.first_stop(text)
            reason = "stop" if cut is not None and reason == "length" else reason
        text = text[:cut].rstrip() if cut is not None else text.rstrip()
        self.sink(Event(text[self.sent :], reason, len(self.prompt_ids), len(produced), error))
        return True


def streamable(text: str, stops: tuple[str, ...]) -> int:
    """How much of the text can be sent now: not the start of a stop string that the next tokens may
    complete, not trailing whitespace (the final answer is stripped), not a half-decoded character.
    Looks at the text's end only."""
    end = len(text)
    for stop in stops:
        for size in range(min(len(stop) - 1, end), 0, -1):
            if text.endswith(stop[:size]):
                end = min(end, len(text) - size)
                break
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end - 1 if end > 0 and text[end - 1] == "\ufffd" else end
