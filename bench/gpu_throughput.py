"""GPU throughput: an 8B-shaped Llama (Llama-3-8B shapes, random weights, no download), LoRA in bf16 and
QLoRA nf4, sequences up to 2048 tokens, seed-style notebook Trainer vs tuneforge's GPU path.

seed-style: every sample padded to 2048, DataCollatorForLanguageModeling, bf16, gradient checkpointing.
tuneforge: padding-free packing, Liger kernels when installed, bf16, gradient checkpointing.
MFU counts 6·N FLOP per real token (4·N for frozen-base LoRA + 2·N recomputation) against 989 TFLOP/s.

    python bench/gpu_throughput.py            # on a GPU: ~6 min on an H100
    python bench/gpu_throughput.py --smoke    # tiny shapes on CPU: checks the plumbing only
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = ("seed-lora", "tuneforge-lora", "seed-qlora", "tuneforge-qlora")
PEAK_TFLOPS = 989.0  # H100 SXM dense bf16


def shapes(smoke: bool) -> dict:
    if smoke:
        return dict(vocab_size=1000, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, seq=256, batch=2, steps=3, warmup=1)  # fmt: skip
    return dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, seq=2048, batch=2, steps=8, warmup=2)  # fmt: skip


def build_model(out: Path, smoke: bool) -> Path:
    import torch
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    s = shapes(smoke)
    config = LlamaConfig(**{k: v for k, v in s.items() if k not in ("seq", "batch", "steps", "warmup")},
                         max_position_embeddings=4096, rope_theta=500000.0, bos_token_id=1, eos_token_id=2)  # fmt: skip
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(out)
    vocab = {f"t{i}": i for i in range(s["vocab_size"])}  # ids only: the bench feeds token ids directly
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
                                        bos_token="t1", eos_token="t2")  # fmt: skip
    tokenizer.save_pretrained(out)
    return out


def synthetic_rows(smoke: bool, n: int = 64):
    """Lengths spread from 1/8 to all of seq, like real chat data; the first quarter of each is prompt."""
    from datasets import Dataset

    s, rng = shapes(smoke), random.Random(0)
    rows = {"input_ids": [], "labels": [], "length": []}
    for _ in range(n):
        length = rng.randint(s["seq"] // 8, s["seq"])
        ids = [rng.randrange(3, s["vocab_size"]) for _ in range(length)]
        rows["input_ids"].append(ids)
        rows["labels"].append([-100] * (length // 4) + ids[length // 4 :])
        rows["length"].append(length)
    return Dataset.from_dict(rows)


def child(contender: str, model_dir: Path, smoke: bool) -> dict:
    import torch
    from transformers import TrainerCallback

    from tuneforge.config.schema import LoraConfig, ModelConfig, QuantConfig, TrainConfig
    from tuneforge.model.build import build_model as build_tuneforge_model
    from tuneforge.train.trainer import build_trainer, training_arguments

    s = shapes(smoke)
    quant = QuantConfig(mode="4bit" if contender.endswith("qlora") else "none")
    bundle = build_tuneforge_model(
        ModelConfig(name_or_path=str(model_dir)), quant, LoraConfig(r=16, alpha=32), True
    )
    rows = synthetic_rows(smoke)
    seed_style = contender.startswith("seed")
    if seed_style:  # what the notebooks do: pad every sample to the full length
        rows = rows.map(lambda r: {"input_ids": r["input_ids"] + [2] * (s["seq"] - r["length"]),
                                   "labels": r["labels"] + [-100] * (s["seq"] - r["length"])})  # fmt: skip
    train = TrainConfig(max_steps=s["warmup"] + s["steps"], batch_size=s["batch"], learning_rate=1e-4,
                        max_length=s["seq"], save_steps=10**6, group_by_length=not seed_style,
                        packing="off" if seed_style else "auto", liger="off" if seed_style else "auto")  # fmt: skip
    args = training_arguments(
        train, output_dir=Path(tempfile.mkdtemp()), dtype=bundle.dtype, has_eval=False, report_to=[]
    )
    marks: dict[int, tuple[float, int]] = {}
    counted = {"tokens": 0}

    def counting(inner):
        def collate(features):
            counted["tokens"] += sum(f["length"] for f in features)  # real tokens, padding excluded
            return inner(features)

        return collate

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks[state.global_step] = (time.perf_counter(), counted["tokens"])

    packing = not seed_style and torch.cuda.is_available()
    trainer = build_trainer(bundle.model, args, train_set=rows, eval_set=None, pad_token_id=2,
                            callbacks=[Clock()], packing=packing, selective=not seed_style)  # fmt: skip
    trainer.data_collator = counting(trainer.data_collator)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    (t0, n0), (t1, n1) = marks[s["warmup"]], marks[s["warmup"] + s["steps"]]
    tokens_per_second = (n1 - n0) / (t1 - t0)
    n_params = sum(p.numel() for p in bundle.model.parameters())
    return {
        "tokens_per_s": tokens_per_second,
        "mfu": tokens_per_second * 6 * n_params / (PEAK_TFLOPS * 1e12),
        "peak_gib": torch.cuda.max_memory_allocated() / 1024**3
        if torch.cuda.is_available()
        else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny shapes; runs on CPU")
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.smoke)))
        return 0
    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print("skipped: no CUDA device (use --smoke to check the plumbing on CPU)")
        return 0
    model_dir = build_model(Path(tempfile.mkdtemp(prefix="tuneforge-gpu-")) / "llama8b", args.smoke)
    results = {}
    for contender in CONTENDERS:
        cmd = [sys.executable, __file__, "--child", contender, str(model_dir)] + (
            ["--smoke"] if args.smoke else []
        )
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            return 1
        results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
    print("| contender | tokens/s | MFU | peak GiB | vs seed |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        base = results["seed-" + name.split("-", 1)[1]]["tokens_per_s"]
        print(
            f"| {name} | {r['tokens_per_s']:.0f} | {r['mfu']:.1%} | {r['peak_gib']:.1f} | {r['tokens_per_s'] / base:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
