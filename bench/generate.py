"""Batched vs one-at-a-time greedy generation, side by side on the same prompts (CPU).

    .venv/bin/python bench/generate.py                 # stories260K and the 16M Llama with the GPT-2 tokenizer
    .venv/bin/python bench/generate.py --prompts 32

Prompts are ChatDoctor questions rendered with the alpaca template through tuneforge's encoder; both paths
use the transformers engine's `generate` (tuneforge.infer.engines.transformers): batch size 1 vs 16,
grouped by length, left padding, KV cache.
The table gives generated tokens per second and whether the outputs are identical token for token.
Needs ../shared (skips a model whose files are absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import build_models  # noqa: E402 - the same 16M Llama the throughput bench trains


def prompts_for(tokenizer, count: int) -> list[list[int]]:
    from tuneforge.data.encode import ChatEncoder
    from tuneforge.data.templates import install_chat_template

    install_chat_template(tokenizer, "alpaca")
    encoder = ChatEncoder(tokenizer)
    rows = json.loads((SHARED / "data" / "chatdoctor" / "chatdoctor5k.json").read_text())[:count]
    return [encoder.prompt_ids([{"role": "user", "content": r["input"][:400]}]) for r in rows]


def timed(model, tokenizer, prompts, batch_size: int, new_tokens: int) -> tuple[list[list[int]], float]:
    from tuneforge.infer.decoding import Decoding
    from tuneforge.infer.engine import engine_for_model

    engine = engine_for_model(model, tokenizer)
    start = time.perf_counter()
    outputs = engine.generate(prompts, decoding=Decoding(max_new_tokens=new_tokens), batch_size=batch_size)
    return outputs, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not (SHARED / "models" / "gpt2-tokenizer-random").is_dir():
        print(f"skipped: {SHARED} not present")
        return 0

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    models = build_models(Path(tempfile.mkdtemp(prefix="tuneforge-gen-")))
    print(
        f"| model | prompts | batched tokens/s (batch {args.batch_size}) | one-at-a-time tokens/s | speed-up | identical |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, path in models.items():
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        prompts = prompts_for(tokenizer, args.prompts)
        batched, batched_s = timed(model, tokenizer, prompts, args.batch_size, args.new_tokens)
        single, single_s = timed(model, tokenizer, prompts, 1, args.new_tokens)
        tokens = sum(len(o) for o in batched)
        same = batched == single
        print(
            f"| {name} | {len(prompts)} | {tokens / batched_s:.0f} | {sum(len(o) for o in single) / single_s:.0f} "
            f"| {single_s / batched_s:.2f}x | {'yes' if same else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
