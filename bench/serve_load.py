"""Load on the live OpenAI-compatible server: N concurrent streaming requests, then the same requests one
at a time, against `tuneforge serve` on 127.0.0.1. Prints time to first token (p50/p95), total latency
(p50/p95), aggregate tokens/s, errors and the server's peak RSS for both, and the batching gain as a ratio.

With --adapters K: K adapters of one base served together, the requests spread over them, all at once,
once with serve.mix_adapters=true (rows of different adapters share a batch) and once false (one adapter
per batch); the last line's ratio is mixed over per-adapter tokens/s, and whether every answer was the same.

    .venv/bin/python bench/serve_load.py                      # trains a tiny run first (offline, ~30 s)
    .venv/bin/python bench/serve_load.py --run runs/quickstart --requests 64 --max-tokens 32
    .venv/bin/python bench/serve_load.py --adapters 4         # four tiny runs on one base (~2 min)
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import openai
import psutil
from rich.console import Console
from rich.table import Table

from tuneforge_dev.live_server import wait_until_up

PROMPTS = [
    "list the files in /srv/{i}",
    "count the lines in notes{i}.txt",
    "delete old{i}.log",
    "make a new folder d{i}",
]


def tiny_run(folder: Path, adapters: int = 1) -> list[Path]:
    """LoRA runs on one tiny random Llama with the generated demo data (no hub, no ../shared needed),
    each from another seed."""
    from tuneforge.config.loading import validate_config
    from tuneforge.train.run import run_finetune
    from tuneforge_dev.demo_data import write_demo_dataset
    from tuneforge_dev.tiny_model import TinySize, build_tiny_model

    model = build_tiny_model(
        folder / "model", "llama", TinySize(hidden=128, layers=4, heads=4, kv_heads=2, vocab=2048)
    )
    train, evaluation = write_demo_dataset(folder / "data", n_train=400, n_eval=40)
    runs = []
    for seed in range(adapters):
        config = validate_config(
            {
                "model": {"name_or_path": str(model)},
                "data": {"path": str(train), "eval_path": str(evaluation)},
                "lora": {"r": 8, "alpha": 16},
                "train": {
                    "max_steps": 40,
                    "batch_size": 8,
                    "learning_rate": 3e-3,
                    "max_length": 96,
                    "seed": seed,
                },
            }
        )
        run_finetune(config, folder / f"run{seed}")
        runs.append(folder / f"run{seed}")
    return runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> dict:
    start = time.perf_counter()
    first, tokens, text = None, 0, ""
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start if first is None else first
            text += chunk.choices[0].delta.content
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    total = time.perf_counter() - start
    ttft = first if first is not None else total
    return {"ttft": ttft, "total": total, "tokens": tokens, "model": model, "prompt": prompt, "text": text}


async def wave(
    base: str, models: str | list[str], prompts: list[str], max_tokens: int, concurrent: bool
) -> tuple[list, list, float]:
    """The prompts (prompt i to models[i % len(models)]), at once or one after the other."""
    models = [models] if isinstance(models, str) else models
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=600)
    results, errors = [], []
    start = time.perf_counter()

    async def guarded(model: str, prompt: str):
        try:
            results.append(await one(client, model, prompt, max_tokens))
        except Exception as exc:  # noqa: BLE001 - counted and shown, the point of a load test
            errors.append(repr(exc))

    requests = [(models[i % len(models)], prompt) for i, prompt in enumerate(prompts)]
    async with client:
        if concurrent:
            await asyncio.gather(*(guarded(model, p) for model, p in requests))
        else:
            for model, prompt in requests:
                await guarded(model, prompt)
    return results, errors, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


class PeakRss:
    def __init__(self, pid: int):
        self.process, self.peak, self.running = psutil.Process(pid), 0, True
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def take(self) -> float:
        value, self.peak = self.peak, 0
        return value / 2**20


@contextmanager
def serving(runs: list[Path], *settings: str) -> Iterator[tuple[str, PeakRss]]:
    """`tuneforge serve` on these runs, up; its address and a watcher of its memory."""
    port = free_port()
    command = [sys.executable, "-m", "tuneforge.cli", "serve", *map(str, runs), "--port", str(port)]
    for setting in settings:
        command += ["--set", setting]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/health", server)
        watcher = PeakRss(server.pid)
        watcher.thread.start()
        yield base, watcher
    finally:
        server.terminate()
        server.wait(timeout=30)


def batching(run: Path, prompts: list[str], args) -> list:
    """One model: all requests at once, then one at a time."""
    name, rows = run.resolve().name, []
    with serving([run], f"serve.max_batch_size={args.batch}") as (base, watcher):
        asyncio.run(wave(base, name, prompts[:4], args.max_tokens, concurrent=False))  # warm-up
        for label, concurrent in (("concurrent", True), ("one at a time", False)):
            watcher.take()
            results, errors, wall = asyncio.run(wave(base, name, prompts, args.max_tokens, concurrent))
            rows.append((label, results, errors, wall, watcher.take()))
    return rows


def adapter_mixing(runs: list[Path], prompts: list[str], args) -> list:
    """Several adapters of one base: all requests at once, rows of different adapters in one batch or not.
    Both servers run side by side and take turns, `args.rounds` waves each; the median wave (by tokens/s)
    is shown, since one wave of a second or two moves with the machine's load."""
    names = [run.resolve().name for run in runs]
    modes = (("mixed adapters", "true"), ("one adapter per batch", "false"))
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                serving(runs, f"serve.max_batch_size={args.batch}", f"serve.mix_adapters={mix}")
            )
            for _, mix in modes
        ]
        for base, _ in servers:
            asyncio.run(wave(base, names, prompts[: len(names)], args.max_tokens, concurrent=True))  # warm-up
        waves: list[list] = [[], []]
        for _ in range(args.rounds):
            for i, (base, watcher) in enumerate(servers):
                results, errors, wall = asyncio.run(wave(base, names, prompts, args.max_tokens, True))
                waves[i].append((modes[i][0], results, errors, wall, watcher.peak / 2**20))
    return [sorted(w, key=lambda row: sum(r["tokens"] for r in row[1]) / row[3])[len(w) // 2] for w in waves]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="A finished run to serve (default: train a tiny one).")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16, help="serve.max_batch_size")
    parser.add_argument("--adapters", type=int, default=1, help="serve this many tiny adapters of one base")
    parser.add_argument("--rounds", type=int, default=5, help="with --adapters: waves per mode, median shown")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tuneforge-serve-load-"))
    prompts = [PROMPTS[i % len(PROMPTS)].format(i=i) for i in range(args.requests)]
    if args.adapters > 1:
        show(adapter_mixing(tiny_run(scratch, args.adapters), prompts, args), args)
    else:
        show(batching(args.run or tiny_run(scratch)[0], prompts, args), args)


def show(rows, args) -> None:
    table = Table(
        title=f"{args.requests} streaming chat requests, {args.max_tokens} new tokens max, greedy, 127.0.0.1"
        + (f", spread over {args.adapters} adapters of one base" if args.adapters > 1 else "")
    )
    for column in (
        "mode",
        "done",
        "errors",
        "TTFT p50 s",
        "TTFT p95 s",
        "total p50 s",
        "total p95 s",
        "tokens/s",
        "server peak RSS MiB",
    ):
        table.add_column(column)
    rates = []
    for label, results, errors, wall, rss in rows:
        ttft, total = [r["ttft"] for r in results], [r["total"] for r in results]
        rate = sum(r["tokens"] for r in results) / wall
        rates.append(rate)
        table.add_row(
            label,
            str(len(results)),
            str(len(errors)),
            f"{percentile(ttft, 0.5):.3f}",
            f"{percentile(ttft, 0.95):.3f}",
            f"{percentile(total, 0.5):.3f}",
            f"{percentile(total, 0.95):.3f}",
            f"{rate:.1f}",
            f"{rss:.0f}",
        )
    console = Console(width=160)
    console.print(table)
    if rates[1] and args.adapters > 1:
        answers = [{(r["model"], r["prompt"]): r["text"] for r in results} for _, results, *_ in rows]
        same = answers[0] == answers[1] and len(answers[0]) == args.requests
        console.print(f"aggregate tokens/s, mixed / per-adapter batches: {rates[0] / rates[1]:.2f}x")
        print(f"mixed_vs_per_adapter={rates[0] / rates[1]:.2f} same_answers={same}")
    elif rates[1]:
        console.print(f"aggregate tokens/s, concurrent / one at a time: {rates[0] / rates[1]:.2f}x")
    for _, _, errors, _, _ in rows:
        for error in errors[:3]:
            console.print(f"[red]{error}[/]")


if __name__ == "__main__":
    main()
