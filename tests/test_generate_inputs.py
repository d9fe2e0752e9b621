"""`tuneforge generate --input` reads rows with the run's own data mapping: on the DialogSum example's data
file it feeds the model, token for token, the prompts training used. Rows with only a `prompt` field, rows
without their answer column, and files of other types work too; the device follows LOCAL_RANK."""

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, needs_shared, write_jsonl
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import load_config
from tuneforge.data.encode import IGNORE
from tuneforge.data.prepare import prepare_data
from tuneforge.infer.engines.transformers import TransformersEngine
from tuneforge.infer.inputs import prompts_from_file
from tuneforge.infer.load import load_run
from tuneforge.model.load import process_device
from tuneforge.train.run import run_finetune

DIALOGSUM_EXAMPLE = ROOT / "examples" / "phi2_qlora_dialogsum.yaml"


def dialogsum_like(path: Path, n: int = 24) -> Path:
    rows = [
        {
            "fname": f"dev_{i}",
            "dialogue": f"#Person1#: Can you count the lines in notes{i}.txt?\n#Person2#: Sure, one moment.",
            "summary": f"#Person2# counts the lines of notes{i}.txt for #Person1#.",
            "topic": "files",
        }
        for i in range(n)
    ]
    return write_jsonl(path, rows)


def train_example(tiny_models, data_file: Path, run_dir: Path, system_prompt: str | None = None):
    overrides = [
        f"model.name_or_path={tiny_models('phi')}",
        f"data.path={data_file}",
        "data.eval_fraction=0",  # every row is a training row, in file order
        "train.max_steps=1",
        "train.max_length=4096",
    ]
    if system_prompt:
        overrides.append(f"data.system_prompt={system_prompt}")
    config = load_config(DIALOGSUM_EXAMPLE, overrides)
    run_finetune(config, run_dir)
    return config


def training_prompts(config, run_dir: Path) -> list[list[int]]:
    """The ids before each sample's first trained token: the prompts training used."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    data = prepare_data(config.data, tokenizer, config.train.max_length)
    return [ids[: next(i for i, x in enumerate(labels) if x != IGNORE)] for ids, labels in
            zip(data.train["input_ids"], data.train["labels"])]  # fmt: skip


def generated_prompts(run_dir: Path, input_file: Path, tmp_path: Path, monkeypatch) -> list[list[int]]:
    """Run the CLI and capture the prompt ids it hands to the model."""
    captured: list[list[int]] = []
    original = TransformersEngine.generate

    def spy(model, prompts, **kwargs):
        captured.extend(prompts)
        return original(model, prompts, **kwargs)

    monkeypatch.setattr(TransformersEngine, "generate", spy)
    out = tmp_path / "predictions.jsonl"
    args = [
        "generate",
        str(run_dir),
        "--input",
        str(input_file),
        "--output",
        str(out),
        "--max-new-tokens",
        "2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == len(captured) and all("generation" in row and "dialogue" in row for row in written)
    assert "exact match" in result.output, "each row holds its reference summary"
    return captured


def test_generate_on_the_dialogsum_training_file_builds_the_training_prompts(
    tiny_models, tmp_path, monkeypatch
):
    data_file = dialogsum_like(tmp_path / "dialogsum.jsonl")
    config = train_example(tiny_models, data_file, tmp_path / "run", system_prompt="Be concise.")
    expected = training_prompts(config, tmp_path / "run")
    got = generated_prompts(tmp_path / "run", data_file, tmp_path, monkeypatch)
    assert got == expected and len(got) == 24


@pytest.mark.slow
def test_generate_on_the_shared_dialogsum_file_builds_the_training_prompts(
    tiny_models, tmp_path, monkeypatch
):
    data_file = needs_shared("data", "dialogsum", "dialogsum.dev.jsonl")
    config = train_example(tiny_models, data_file, tmp_path / "run")
    expected = training_prompts(config, tmp_path / "run")
    got = generated_prompts(tmp_path / "run", data_file, tmp_path, monkeypatch)
    assert got == expected and len(got) == 500


@pytest.fixture(scope="module")
def quick_run_dir(tiny_models, demo_files, tmp_path_factory) -> Path:
    from conftest import quick_config

    # eval.max_new_tokens unlike generate's old default (128), so its use is seen
    config = quick_config(
        tiny_models("llama"), *demo_files, train={"max_steps": 1}, eval={"max_new_tokens": 6}
    )
    run_dir = tmp_path_factory.mktemp("run") / "quick"
    run_finetune(config, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def quick_run(quick_run_dir):
    return load_run(quick_run_dir)


def test_rows_without_the_answer_column_and_plain_prompt_rows(quick_run, tmp_path):
    data = quick_run.config.data
    mapped = prompts_from_file(
        write_jsonl(tmp_path / "a.jsonl", [{"prompt": "count a.txt"}]), data, "prompt_completion"
    )
    assert mapped[0].messages == [{"role": "user", "content": "count a.txt"}] and mapped[0].reference is None
    csv = tmp_path / "b.csv"
    csv.write_text("prompt,completion\ncount a.txt,wc -l a.txt\n")
    rows = prompts_from_file(csv, data, "prompt_completion")
    assert rows[0].reference == "wc -l a.txt" and rows[0].messages[-1]["content"] == "count a.txt"
    with pytest.raises(Exception, match="rows need the columns the run was trained on"):
        prompts_from_file(write_jsonl(tmp_path / "c.jsonl", [{"question": "q"}]), data, "prompt_completion")


def test_mix_runs_read_rows_with_the_matching_source(tmp_path):
    """A data.mix source with an automatic shape still prompts rows that lack the answer column."""
    from tuneforge.config.schema import DataConfig

    data = DataConfig(
        mix=[
            {"path": "chat.jsonl", "format": "messages"},
            {
                "path": "d.jsonl",
                "prompt_format": "Summarize: {dialogue}",
                "columns": {"completion": "summary"},
            },
        ],
        system_prompt="Be brief.",
    )
    rows = prompts_from_file(write_jsonl(tmp_path / "d.jsonl", [{"dialogue": "hi"}]), data, None)
    assert rows[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Summarize: hi"},
    ]
    with pytest.raises(Exception, match=r"messages or conversations or instruction or dialogue"):
        prompts_from_file(write_jsonl(tmp_path / "q.jsonl", [{"question": "q"}]), data, None)


def test_messages_rows_are_prompted_up_to_their_last_answer(quick_run, tmp_path):
    data = quick_run.config.data.model_copy(update={"format": "messages"})
    chat = [{"role": "user", "content": "count a.txt"}, {"role": "assistant", "content": "wc -l a.txt"}]
    rows = prompts_from_file(
        write_jsonl(tmp_path / "m.jsonl", [{"messages": chat}, {"messages": chat[:1]}]), data, None
    )
    assert rows[0].messages == chat[:1] and rows[0].reference == "wc -l a.txt"
    assert rows[1].messages == chat[:1] and rows[1].reference is None


def test_the_device_follows_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert process_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert process_device() == torch.device("cuda", 3)
    monkeypatch.delenv("LOCAL_RANK")
    assert process_device() == torch.device("cuda", 0)


def test_generate_takes_the_runs_answer_length_and_shows_what_show_says(
    quick_run, quick_run_dir, tmp_path, monkeypatch
):
    """Without --max-new-tokens the run's eval.max_new_tokens applies; --show limits the rows printed,
    also without --output (a trial printed 200 rows for --show 3)."""
    lengths: list[int] = []
    original = TransformersEngine.generate

    def spy(engine, prompts, decoding, **kwargs):
        lengths.append(decoding.max_new_tokens)
        return original(engine, prompts, decoding, **kwargs)

    monkeypatch.setattr(TransformersEngine, "generate", spy)
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": f"count file{i}.txt"} for i in range(5)])
    run_dir = str(quick_run_dir)
    shown = CliRunner().invoke(app, ["generate", run_dir, "--input", str(rows), "--show", "2"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.count(">>> ") == 2 and lengths == [6]
    everything = CliRunner().invoke(app, ["generate", run_dir, "--input", str(rows), "--max-new-tokens", "3"])
    assert everything.output.count(">>> ") == 5 and lengths[-1] == 3
    refused = CliRunner().invoke(app, ["generate", run_dir, "--prompt", "hi", "--max-new-tokens", "0"])
    assert refused.exit_code == 2 and "max-new-tokens" in refused.output
