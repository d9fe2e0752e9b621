"""DPO training step on CPU: log-probs through the selective head (answer positions only, the default)
against the model's full logits (the reference path), side by side.

A 16M Llama (hidden 256, 4 layers) with the GPT-2 vocabulary size (50,257), LoRA r=16 on all linear
layers, 4 pairs (8 sequences) of 512 tokens whose last 64 are the answer. Each path runs in its own
process, so peak RSS is its own; both compute the same loss (printed) and step the same optimizer.

    .venv/bin/python bench/preference_step.py            # ~2 min on 2 cores
    .venv/bin/python bench/preference_step.py --steps 5

The last line reads `speedup=X rss_ratio=Y` (selective over full logits).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

PAIRS, LENGTH, ANSWER, VOCAB = 4, 512, 64, 50257


def one_path(selective: bool, steps: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuneforge.train.preference_loss import SequenceLogps, pair_loss, sequence_logps

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=LENGTH, tie_word_embeddings=True,
    )  # fmt: skip
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=16, target_modules="all-linear"))
    model.train()
    input_ids = torch.randint(0, VOCAB, (2 * PAIRS, LENGTH))
    labels = input_ids.clone()
    labels[:, : LENGTH - ANSWER] = -100
    mask = torch.ones_like(input_ids)
    reference = torch.full((2 * PAIRS,), -400.0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times, losses = [], []
    for _ in range(steps + 1):  # the first step warms up and is not timed
        start = time.perf_counter()
        logps = sequence_logps(model, input_ids, mask, labels, selective=selective)
        chosen = SequenceLogps(logps.total[:PAIRS], logps.tokens[:PAIRS])
        rejected = SequenceLogps(logps.total[PAIRS:], logps.tokens[PAIRS:])
        loss = pair_loss("dpo", chosen, rejected, reference[:PAIRS], reference[PAIRS:], beta=0.1).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"s_per_step": sum(times[1:]) / steps, "peak_rss_mb": rss_mb, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", choices=["selective", "full"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_path(args.child == "selective", args.steps)))
        return
    results = {}
    for path in ("full", "selective"):
        run = [sys.executable, __file__, "--child", path, "--steps", str(args.steps)]
        output = subprocess.run(run, capture_output=True, text=True, check=True).stdout
        results[path] = json.loads(output.strip().splitlines()[-1])
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"DPO step: {PAIRS} pairs x {LENGTH} tokens ({ANSWER} answer), vocab {VOCAB:,}, CPU")
    for column in ("log-probs", "s/step", "peak RSS (MB)", "losses (same inputs)"):
        table.add_column(column)
    for path, result in results.items():
        losses = ", ".join(f"{x:.5f}" for x in result["losses"])
        table.add_row(path, f"{result['s_per_step']:.2f}", f"{result['peak_rss_mb']:.0f}", losses)
    Console().print(table)
    speedup = results["full"]["s_per_step"] / results["selective"]["s_per_step"]
    rss = results["selective"]["peak_rss_mb"] / results["full"]["peak_rss_mb"]
    print(f"speedup={speedup:.2f} rss_ratio={rss:.2f}")


if __name__ == "__main__":
    main()
