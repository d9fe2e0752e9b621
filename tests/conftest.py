"""Shared fixtures: tiny local models (one per architecture, built once per session) and small datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from tuneforge.config.loading import validate_config
from tuneforge.train.run import run_finetune
from tuneforge_dev.demo_data import tokenizer_corpus, write_demo_dataset
from tuneforge_dev.tiny_model import TinySize, build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEFORGE_SHARED", ROOT.parent / "shared"))
SMALL = TinySize(hidden=64, layers=2, heads=4, kv_heads=2, vocab=1024)


def needs_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is optional)")
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    built: dict[str, Path] = {}

    def get(arch: str = "llama") -> Path:
        if arch not in built:
            built[arch] = build_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, SMALL)
        return built[arch]

    return get


def build_metaspace_tokenizer(byte_fallback: bool = True) -> PreTrainedTokenizerFast:
    """SentencePiece-style BPE like Llama 2's and stories260K's: spaces become '▁', one is prepended to the
    text (the 'dummy prefix'), BOS is added; with byte_fallback unknown characters become byte tokens, without
    it they become <unk> (a tokenizer that cannot represent every text)."""
    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=byte_fallback))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)] if byte_fallback else []
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens])
    backend.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    bos = ("<s>", backend.token_to_id("<s>"))
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[bos])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture(scope="session")
def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    return build_metaspace_tokenizer()


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), n_train=160, n_eval=24)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def quick_config(model_dir: Path, train_path: Path, eval_path: Path | None = None, **sections):
    """A config for a few fast CPU steps; `sections` merge into the defaults, e.g. train={'max_steps': 4}."""
    raw = {
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(train_path), "eval_path": str(eval_path) if eval_path else None},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {
            "max_steps": 4,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "max_length": 64,
            "eval_steps": 2,
            "save_steps": 2,
            "logging_steps": 1,
        },
        "log": {"tensorboard": True},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values) if isinstance(values, dict) else raw.__setitem__(
            section, values
        )
    return validate_config(raw)


@pytest.fixture(autouse=True)
def private_token_cache(tmp_path, monkeypatch):
    """Each test gets its own tokenization cache, so no test sees another's entries."""
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "token-cache"))


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory, tiny_models, demo_files) -> list[Path]:
    """Two adapters on the same tiny base, trained differently, so the three models answer differently."""
    train, evaluation = demo_files
    root = tmp_path_factory.mktemp("served")
    runs = []
    for name, steps, rate, system in (
        ("alpha", 200, 5e-3, None),
        ("beta", 300, 1e-2, "Answer with one shell command."),
    ):
        config = quick_config(
            tiny_models("llama"),
            train,
            evaluation,
            data={"system_prompt": system},
            train={
                "max_steps": steps,
                "learning_rate": rate,
                "eval_steps": steps,
                "save_steps": steps,
                "max_length": "auto",
            },
        )
        run_finetune(config, root / name)
        runs.append(root / name)
    return runs
