"""Load on the live OpenAI-compatible server: N concurrent streaming requests, then the same requests one
at a time, against `tuneforge serve` on 127.0.0.1. Prints time to first token (p50/p95), total latency
(p50/p95), aggregate tokens/s, errors and the server's peak RSS for both, and the batching gain as a ratio.

    .venv/bin/python bench/serve_load.py                      # trains a tiny run first (offline, ~30 s)
    .venv/bin/python bench/serve_load.py --run runs/quickstart --requests 64 --max-tokens 32
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


def tiny_run(folder: Path) -> Path:
    """A LoRA run on a tiny random Llama with the generated demo data: no hub, no ../shared needed."""
    from tuneforge.config.loading import validate_config
    from tuneforge.train.run import run_finetune
    from tuneforge_dev.demo_data import write_demo_dataset
    from tuneforge_dev.tiny_model import TinySize, build_tiny_model

    model = build_tiny_model(
        folder / "model", "llama", TinySize(hidden=128, layers=4, heads=4, kv_heads=2, vocab=2048)
    )
    train, evaluation = write_demo_dataset(folder / "data", n_train=400, n_eval=40)
    config = validate_config(
        {
            "model": {"name_or_path": str(model)},
            "data": {"path": str(train), "eval_path": str(evaluation)},
            "lora": {"r": 8, "alpha": 16},
            "train": {"max_steps": 40, "batch_size": 8, "learning_rate": 3e-3, "max_length": 96},
        }
    )
    run_finetune(config, folder / "run")
    return folder / "run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> dict:
    start = time.perf_counter()
    first, tokens = None, 0
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    total = time.perf_counter() - start
    return {"ttft": first if first is not None else total, "total": total, "tokens": tokens}


async def wave(
    base: str, model: str, prompts: list[str], max_tokens: int, concurrent: bool
) -> tuple[list, list, float]:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=600)
    results, errors = [], []
    start = time.perf_counter()

    async def guarded(prompt: str):
        try:
            results.append(await one(client, model, prompt, max_tokens))
        except Exception as exc:  # noqa: BLE001 - counted and shown, the point of a load test
            errors.append(repr(exc))

    if concurrent:
        await asyncio.gather(*(guarded(p) for p in prompts))
    else:
        for prompt in prompts:
            await guarded(prompt)
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="A finished run to serve (default: train a tiny one).")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16, help="serve.max_batch_size")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tuneforge-serve-load-"))
    run = args.run or tiny_run(scratch)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "serve",
        str(run),
        "--port",
        str(port),
        "--set",
        f"serve.max_batch_size={args.batch}",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/health", server)
        watcher = PeakRss(server.pid)
        watcher.thread.start()
        prompts = [PROMPTS[i % len(PROMPTS)].format(i=i) for i in range(args.requests)]
        asyncio.run(wave(base, run.resolve().name, prompts[:4], args.max_tokens, concurrent=False))  # warm-up
        rows = []
        for label, concurrent in (("concurrent", True), ("one at a time", False)):
            watcher.take()
            results, errors, wall = asyncio.run(
                wave(base, run.resolve().name, prompts, args.max_tokens, concurrent)
            )
            rows.append((label, results, errors, wall, watcher.take()))
    finally:
        server.terminate()
        server.wait(timeout=30)
    show(rows, args)


def show(rows, args) -> None:
    table = Table(
        title=f"{args.requests} streaming chat requests, {args.max_tokens} new tokens max, greedy, 127.0.0.1"
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
    if rates[1]:
        console.print(f"aggregate tokens/s, concurrent / one at a time: {rates[0] / rates[1]:.2f}x")
    for _, _, errors, _, _ in rows:
        for error in errors[:3]:
            console.print(f"[red]{error}[/]")


if __name__ == "__main__":
    main()
