"""Build a tiny random causal LM with a freshly trained byte-level BPE tokenizer, offline.

The result is shaped like a real base checkpoint of the chosen architecture (same module names,
so LoRA targets from real configs apply) and, like most base models, has no pad token. Only
qwen2 ships a chat template, as the Qwen instruct models do.

    python -m tuneforge_dev.tiny_model models/tiny-llama --arch llama [--hidden 128 --layers 4 --seed 0]
    python -m tuneforge_dev.tiny_model models/tiny-llama-tools --corpus tools   # for the tool-calling example
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PhiConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from tuneforge.errors import TuneforgeError
from tuneforge_dev.demo_data import tokenizer_corpus
from tuneforge_dev.tool_data import tokenizer_corpus as tool_corpus

Arch = Literal["llama", "mistral", "qwen2", "phi", "gpt2"]
ARCHES: tuple[str, ...] = ("llama", "mistral", "qwen2", "phi", "gpt2")
Corpus = Literal["demo", "tools"]

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


CHATML_SPECIALS = ["<|im_start|>", "<|im_end|>"]
TOOL_TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]


@dataclass(frozen=True)
class TinySize:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    vocab: int = 2048


def build_tokenizer(arch: Arch, vocab_size: int, corpus: Corpus = "demo") -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes), trained on the demo corpus (with "tools", on the tool-calling
    corpus too, plus chatml's and the tool format's tags as single tokens); special tokens follow the
    arch's family."""
    if arch in ("gpt2", "phi"):
        specials, bos, eos = ["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>"
    elif arch == "qwen2":
        specials, bos, eos = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>"
    else:
        specials, bos, eos = ["<unk>", "<s>", "</s>"], "<s>", "</s>"
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    texts = tokenizer_corpus() + (tool_corpus() if corpus == "tools" else [])
    backend.train_from_iterator(texts, trainer=trainer)
    if corpus == "tools":  # one token each, as in Qwen2.5's and Qwen3's tokenizers: short tags to attend over
        backend.add_special_tokens(CHATML_SPECIALS)
        backend.add_tokens(TOOL_TAGS)
    if arch in ("llama", "mistral"):  # these families prepend BOS, like the real tokenizers
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token="<unk>" if "<unk>" in specials else None,
    )
    if arch == "qwen2":
        tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def build_config(arch: Arch, size: TinySize, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": None,
    }
    vocab = len(tokenizer)
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab,
            n_embd=size.hidden,
            n_layer=size.layers,
            n_head=size.heads,
            n_positions=1024,
            **ids,
        )
    if arch == "phi":
        return PhiConfig(
            vocab_size=vocab,
            hidden_size=size.hidden,
            intermediate_size=size.hidden * 4,
            num_hidden_layers=size.layers,
            num_attention_heads=size.heads,
            max_position_embeddings=1024,
            **ids,
        )
    family = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[arch]
    return family(
        vocab_size=vocab,
        hidden_size=size.hidden,
        intermediate_size=int(size.hidden * 8 / 3) // 8 * 8,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        **ids,
    )


def build_tiny_model(
    out_dir: str | Path,
    arch: Arch = "llama",
    size: TinySize | None = None,
    seed: int = 0,
    corpus: Corpus = "demo",
) -> Path:
    if arch not in ARCHES:
        raise TuneforgeError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHES)}")
    size = size or TinySize()
    out = Path(out_dir)
    tokenizer = build_tokenizer(arch, size.vocab, corpus)
    config = build_config(arch, size, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny random causal LM and its tokenizer (offline).")
    parser.add_argument("out_dir", help="folder to write the model and tokenizer to")
    parser.add_argument("--arch", default="llama", choices=ARCHES)
    parser.add_argument("--hidden", type=int, default=TinySize.hidden, help="hidden size")
    parser.add_argument("--layers", type=int, default=TinySize.layers, help="number of layers")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    parser.add_argument("--corpus", default="demo", choices=("demo", "tools"), help="tokenizer training text")
    args = parser.parse_args(argv)
    size = TinySize(hidden=args.hidden, layers=args.layers)
    out = build_tiny_model(args.out_dir, args.arch, size, seed=args.seed, corpus=args.corpus)
    print(f"tiny {args.arch} model written to {out}")


if __name__ == "__main__":
    main()
