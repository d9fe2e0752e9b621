"""Requests for different adapters of one base share a batch (peft's adapter_names), and each answer is
the one its model gives alone; with serve.mix_adapters false they do not share one."""

from __future__ import annotations

import threading

import pytest

from tuneforge.config.schema import ServeConfig
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engines.transformers import TransformersEngine
from tuneforge.infer.load import load_models

PROMPTS = [
    "list the files in /srv/kalo",
    "count the lines in mira.txt",
    "delete tekfa.log",
    "make a new folder bo",
]


class RecordingEngine(TransformersEngine):
    """Records the models of each batch it generates."""

    def __init__(self, *args):
        super().__init__(*args)
        self.batches: list[list[str]] = []

    def _generate(self, jobs):
        self.batches.append([job.served.name for job in jobs])
        super()._generate(jobs)


def answers(engine: RecordingEngine, requests: list[tuple[str, str]]) -> list[str]:
    """Submit all requests at once; their whole answers, in order."""
    texts, done = [""] * len(requests), [threading.Event() for _ in requests]

    def sink(i):
        def take(event):
            texts[i] += event.delta
            if event.finish_reason is not None:
                done[i].set()

        return take

    for i, (name, prompt) in enumerate(requests):
        ids = engine.chat_ids(name, [{"role": "user", "content": prompt}])
        engine.submit(name, ids, Decoding(max_new_tokens=16), sink(i))
    for event in done:
        assert event.wait(120)
    return texts


@pytest.fixture(scope="module")
def served(two_runs):
    return load_models(two_runs)


@pytest.mark.parametrize("mix", [True, False])
def test_adapters_share_batches_and_answer_as_they_do_alone(served, mix):
    names = list(served)  # alpha, beta and their base
    assert len(names) == 3
    limits = ServeConfig(mix_adapters=mix, batch_wait_ms=200, max_batch_size=64)
    engine = RecordingEngine(served, limits).start()
    try:
        requests = [(names[i % 3], PROMPTS[i % 4]) for i in range(12)]
        together = answers(engine, requests)
        alone = [answers(engine, [request])[0] for request in requests]
    finally:
        engine.stop()
    assert together == alone
    by_prompt: dict[str, set[str]] = {}
    for (_, prompt), answer in zip(requests, alone):
        by_prompt.setdefault(prompt, set()).add(answer)
    assert any(len(texts) > 1 for texts in by_prompt.values())  # the models differ: a wrong row would show
    mixed = [batch for batch in engine.batches if len(set(batch)) > 1]
    if mix:
        assert mixed and max(len(batch) for batch in engine.batches) == 12, engine.batches
    else:
        assert not mixed, engine.batches


@pytest.mark.parametrize(("batch", "expected"), [(4, ["a", "a", "a"]), (8, ["a", "a", "a", "b", "b", "b"])])
def test_other_adapters_join_only_a_batch_the_oldest_adapter_fills_less_than_half(served, batch, expected):
    alpha, beta = list(served)[:2]
    engine = TransformersEngine(served, ServeConfig(max_batch_size=batch))  # not started: nothing generates
    for name in (alpha, beta, alpha, beta, alpha, beta):
        engine.submit(name, [1, 2, 3], Decoding(), lambda event: None)
    taken = engine._take_batch()
    assert ["a" if job.served.name == alpha else "b" for job in taken] == expected
