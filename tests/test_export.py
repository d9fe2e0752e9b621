"""`tuneforge export`: merged hf folders read by plain transformers in a fresh process, GGUF read back by an
independent reader, Ollama templates rendered as Ollama would, the QLoRA merge report, damaged adapters,
hub upload up to the call, and GGUF files as base models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from conftest import needs_shared, quick_config
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.cli.app import quiet_third_party_noise
from tuneforge.data.encode import ChatEncoder
from tuneforge.data.sources import read_jsonl
from tuneforge.errors import TuneforgeError
from tuneforge.export.exporter import ExportOptions, export_run
from tuneforge.train.run import run_finetune

runner = CliRunner()


def stories_config(**train):
    """float32 everywhere (on CUDA `auto` would be bf16): the figures below are float32 figures."""
    return quick_config(
        needs_shared("models", "stories260K"),
        needs_shared("data", "diseases_symptoms", "Diseases_Symptoms.csv"),
        data={
            "eval_path": None,
            "eval_fraction": 0.1,
            "format": "prompt_completion",
            "prompt_format": "What are the symptoms of {Name}?",
            "columns": {"completion": "Symptoms"},
            "template": "alpaca",
        },
        model={"dtype": "float32"},
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        train={
            "max_steps": 30,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "max_length": "auto",
            "eval_steps": 30,
            "save_steps": 30,
            "logging_steps": 10,
            "optimizer": "adamw_torch",
            **train,
        },
    )


@pytest.fixture(scope="module")
def stories_run(tmp_path_factory) -> Path:
    """A LoRA run on the real pretrained stories260K, with its eval split saved."""
    run = tmp_path_factory.mktemp("export") / "run"
    run_finetune(stories_config(), run)
    return run


def eval_conversations(run: Path, limit: int = 20) -> list[list[dict]]:
    rows = [row["messages"] for row in read_jsonl(run / "eval_split.jsonl")]
    assert len(rows) >= limit
    return rows[:limit]


def adapter_on_base(run: Path) -> tuple[torch.nn.Module, ChatEncoder]:
    """The evaluated model, built with peft directly rather than through tuneforge's loader."""
    base = AutoModelForCausalLM.from_pretrained(needs_shared("models", "stories260K"), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, run / "adapter").eval()
    return model, ChatEncoder(AutoTokenizer.from_pretrained(run / "adapter"))


@torch.inference_mode()
def logits_of(model, sequences: list[list[int]]) -> list[torch.Tensor]:
    return [model(torch.tensor([ids])).logits[0] for ids in sequences]


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, (SystemExit, type(None))), result.exception
    return result


FRESH_READER = textwrap.dedent(
    """
    import json, sys
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, request, result = sys.argv[1:4]
    job = json.load(open(request))
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        out = {f"l{i}": model(torch.tensor([ids])).logits[0] for i, ids in enumerate(job["ids"])}
    # the standard way: apply_chat_template tokenizes and adds no special tokens of its own
    prompts = [list(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True)["input_ids"])
               for m in job["prompts"]]
    meta = {"prompts": json.dumps(prompts), "eos": json.dumps(model.generation_config.eos_token_id),
            "tuneforge": str(any(name.startswith("tuneforge") for name in sys.modules))}
    save_file(out, result, metadata=meta)
    """
)


def test_hf_export_is_plain_transformers_and_reproduces_the_adapter(stories_run, tmp_path):
    out = tmp_path / "hf"
    result = invoke("export", stories_run, "--out", out)
    assert result.exit_code == 0, result.output
    check = json.loads((out / "export_check.json").read_text())
    assert check["passed"] and check["rows"] == 20 and check["against_adapter_on_quantized_base"] is None
    figures = check["against_adapter_on_base"]
    assert figures["template_prompts_equal"] == figures["template_prompts"] == 20

    model, encoder = adapter_on_base(stories_run)
    conversations = eval_conversations(stories_run)
    ids = [encoder.encode_conversation(c).input_ids for c in conversations]
    prompts = [c[:-1] for c in conversations]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"ids": ids, "prompts": prompts}))
    script = tmp_path / "reader.py"
    script.write_text(FRESH_READER)
    done = subprocess.run(
        [sys.executable, script, out, request, tmp_path / "out.safetensors"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    exported = load_file(tmp_path / "out.safetensors")
    from safetensors import safe_open

    with safe_open(tmp_path / "out.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["tuneforge"] == "False"
    for i, reference in enumerate(logits_of(model, ids)):
        assert (exported[f"l{i}"] - reference).abs().max().item() <= 1e-4
    # A user prompting the export through its own chat template gets the training prompts, and EOS stops it.
    assert json.loads(meta["prompts"]) == [encoder.prompt_ids(p) for p in prompts]
    assert encoder.tokenizer.eos_token_id in json.loads(meta["eos"])

    card = (out / "README.md").read_text()
    assert "Diseases_Symptoms.csv" in card and "Export check" in card
    # A local base is no hub id: the card says so instead of linking a path.
    assert "base_model:" not in card.split("---")[1] and "names no `base_model`" in card
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir()}
    assert len(set(modes.values())) == 1, f"the weights are as readable as the rest: {modes}"
    # `generate` takes the export as it takes the run, and answers the same.
    from_run = invoke("generate", stories_run, "--prompt", "Asthma", "--max-new-tokens", "16")
    from_export = invoke("generate", out, "--prompt", "Asthma", "--max-new-tokens", "16")
    assert from_run.exit_code == from_export.exit_code == 0, from_export.output
    answer = from_run.output.split(">>> Asthma")[1]
    assert answer.strip() and from_export.output.split(">>> Asthma")[1] == answer


def test_qlora_export_reports_both_bases(tmp_path):
    run = tmp_path / "run4"
    config = stories_config(max_steps=6)
    config = config.model_copy(update={"quant": config.quant.model_copy(update={"mode": "4bit"})})
    run_finetune(config, run)
    unquantized = export_run(run, tmp_path / "merged", ExportOptions())
    dequantized = export_run(run, tmp_path / "deq", ExportOptions(merge_base="dequantized"))
    # Merged into the original weights: ~0 against the adapter on them, the 4-bit rounding against the trained model.
    assert unquantized.against_adapter_on_base["max_abs_logit_diff"] <= 1e-4
    gap = unquantized.against_adapter_on_quantized_base["max_abs_logit_diff"]
    assert gap > 100 * unquantized.against_adapter_on_base["max_abs_logit_diff"]
    # Merged into the dequantized 4-bit weights: the export computes what was trained and evaluated.
    assert dequantized.against_adapter_on_quantized_base["max_abs_logit_diff"] <= 1e-4
    note = json.loads((tmp_path / "merged" / "tuneforge_export.json").read_text())["merged"]
    assert "reloaded unquantized" in note


def converted(run: Path, out: Path, *args: str):
    result = invoke("export", run, "--out", out, *args)
    if "could not download" in result.output:
        pytest.skip("llama.cpp's converter could not be fetched (no package registry)")
    assert result.exit_code == 0, result.output
    return json.loads((out / "export_check.json").read_text())


def test_gguf_export_agrees_with_the_adapter_and_carries_template_and_eos(stories_run, tmp_path):
    from gguf import GGUFReader

    out = tmp_path / "gguf"
    check = converted(stories_run, out, "--format", "gguf", "--quant", "f16")
    assert check["against_adapter_on_base"]["top1_agreement"] >= 0.95
    # Read back here too, by transformers' GGUF loader, against peft's adapter on the HF base.
    model, encoder = adapter_on_base(stories_run)
    ids = [encoder.encode_conversation(c).input_ids for c in eval_conversations(stories_run)]
    gguf_model = AutoModelForCausalLM.from_pretrained(
        out, gguf_file="model-f16.gguf", dtype=torch.float32
    ).eval()
    agree = positions = 0
    for reference, read in zip(logits_of(model, ids), logits_of(gguf_model, ids)):
        agree += (reference.argmax(-1) == read.argmax(-1)).sum().item()
        positions += reference.shape[0]
    assert agree / positions >= 0.95
    fields = GGUFReader(out / "model-f16.gguf").fields

    def value(key):
        field = fields[key]
        part = field.parts[field.data[0]]
        return bytes(part).decode() if key.endswith("template") else int(part[0])

    assert value("tokenizer.chat_template") == encoder.tokenizer.chat_template
    name = fields["general.name"]
    assert bytes(name.parts[name.data[0]]).decode() == "gguf", "the export's name, not '.Hf'"
    assert value("tokenizer.ggml.eos_token_id") == encoder.tokenizer.eos_token_id
    # A user of the GGUF file alone, through transformers' GGUF loader and its embedded template, sends
    # the prompts training used (BOS included), and the export check says so.
    tokenizer = AutoTokenizer.from_pretrained(out, gguf_file="model-f16.gguf")
    prompts = [c[:-1] for c in eval_conversations(stories_run)]
    standard = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True) for p in prompts]
    assert [list(s["input_ids"]) for s in standard] == [encoder.prompt_ids(p) for p in prompts]
    figures = check["against_adapter_on_base"]
    assert figures["template_prompts_equal"] == figures["template_prompts"] == len(prompts)


def test_ollama_export_of_a_sentencepiece_run_is_refused_and_writes_nothing(stories_run, tmp_path):
    """stories260K's tokenizer is SentencePiece with prepend_scheme first: Ollama would prompt it with a
    space after BOS that training never saw. Refused before anything is written."""
    out = tmp_path / "ollama"
    result = invoke("export", stories_run, "--out", out, "--format", "ollama")
    assert result.exit_code == 2 and "would tokenize this model's prompts differently" in result.output
    assert not out.exists() and leftovers(tmp_path) == []


def damage_truncate(adapter: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def damage_remove(adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").unlink()


def damage_other_base(adapter: Path) -> None:
    """An adapter saved for a shallower model: stories260K's first two layers only."""
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if ".layers.0." in k or ".layers.1." in k},
        adapter / "adapter_model.safetensors",
    )


def damage_shapes(adapter: Path) -> None:
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file(
        {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in weights.items()},
        adapter / "adapter_model.safetensors",
    )


def leftovers(folder: Path) -> list[str]:
    """Hidden staging or set-aside folders an export left beside its --out."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (damage_truncate, "is it complete"),
        (damage_remove, "is it complete"),
        (damage_other_base, "saved for another base model"),
        (damage_shapes, "saved for this base model"),
    ],
)
def test_damaged_adapter_is_a_clear_error_and_writes_nothing(damage, says, stories_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stories_run, run)
    damage(run / "adapter")
    out = tmp_path / "exports" / "model"
    result = invoke("export", run, "--out", out)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists() and leftovers(out.parent) == []


def test_a_failure_after_writing_leaves_nothing_and_a_killed_export_is_cleaned_up(
    stories_run, tmp_path, monkeypatch
):
    from tuneforge.export import exporter

    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = tmp_path / f".hf.partial-{dead.pid}"
    (abandoned / "sub").mkdir(parents=True)

    def reader_fails(folder, *args):
        assert (folder / "model.safetensors").is_file()  # the weights were written when it failed
        raise TuneforgeError("reader failed")

    monkeypatch.setattr(exporter, "run_reader", reader_fails)
    result = invoke("export", stories_run, "--out", tmp_path / "hf")
    assert result.exit_code == 2 and "reader failed" in result.output
    assert not (tmp_path / "hf").exists() and leftovers(tmp_path) == []


def test_tolerance_follows_the_coarser_of_export_and_reference():
    from tuneforge.export.check import tolerance

    assert tolerance("float32", "float32").max_abs_diff == 1e-3
    assert tolerance("float32", "bfloat16") == tolerance("bfloat16", "float32") == tolerance("f16", "float32")
    assert tolerance("f32", "bfloat16").max_abs_diff is None
    assert tolerance("q4_k_m", "float32").min_top1 < tolerance("q8_0", "float32").min_top1


def test_dora_runs_load_and_export_exactly(tiny_models, demo_files, tmp_path):
    train, evaluation = demo_files
    config = quick_config(tiny_models("llama"), train, evaluation, lora={"dora": True, "r": 4, "alpha": 8})
    run_finetune(config, tmp_path / "dora")
    result = export_run(tmp_path / "dora", tmp_path / "hf", ExportOptions())
    assert result.passed and result.against_adapter_on_base["max_abs_logit_diff"] <= 1e-4


def test_failed_check_leaves_no_export_unless_allowed(stories_run, tmp_path, monkeypatch):
    from tuneforge.export import check, exporter

    strict = check.Tolerance(min_top1=1.0, max_abs_diff=0.0)
    monkeypatch.setattr(exporter, "tolerance", lambda fmt, weights: strict)
    out = tmp_path / "strict"
    result = invoke("export", stories_run, "--out", out)
    assert result.exit_code == 2 and "does not match" in result.output and not out.exists(), result.output
    assert leftovers(tmp_path) == []
    kept = invoke("export", stories_run, "--out", out, "--allow-mismatch")
    assert kept.exit_code == 0 and "FAILED" in kept.output
    assert json.loads((out / "export_check.json").read_text())["passed"] is False


def test_destination_rules(stories_run, tmp_path):
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("keep")
    refused = invoke("export", stories_run, "--out", users)
    assert refused.exit_code == 2 and "not a tuneforge export" in refused.output
    assert (users / "notes.txt").read_text() == "keep"
    out = tmp_path / "hf"
    assert invoke("export", stories_run, "--out", out).exit_code == 0
    again = invoke("export", stories_run, "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.output
    (out / "stale.txt").write_text("from before")
    assert invoke("export", stories_run, "--out", out, "--overwrite").exit_code == 0
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "onnx"], "--format 'onnx'"),
        (["--quant", "q3"], "--quant 'q3'"),
        (["--merge-base", "zero"], "--merge-base 'zero'"),
        (["--private"], "--private applies to --push-to-hub"),
        (["--format", "gguf", "--quant", "q4_k_m"], "llama-quantize"),
    ],
)
def test_bad_export_options(args, expected, stories_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("TUNEFORGE_LLAMA_QUANTIZE", raising=False)
    out = tmp_path / "out"
    result = invoke("export", stories_run, "--out", out, *args)
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not out.exists()


class FakeHub:
    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        FakeHub.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        FakeHub.calls.append(
            ("upload_folder", kwargs, sorted(p.name for p in Path(kwargs["folder_path"]).iterdir()))
        )


def test_push_to_hub_uploads_the_checked_folder_and_never_writes_the_token(
    stories_run, tmp_path, monkeypatch
):
    import huggingface_hub

    secret = "hf_tuneforgetesttoken0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    out = tmp_path / "hub"
    result = invoke("export", stories_run, "--out", out, "--push-to-hub", "me/stories-lora", "--private")
    assert result.exit_code == 0, result.output
    (create, repo, options), (upload, kwargs, files) = FakeHub.calls
    assert (create, repo, options["private"]) == ("create_repo", "me/stories-lora", True)
    assert upload == "upload_folder" and kwargs["folder_path"] == str(out) and "export_check.json" in files
    assert secret not in result.output
    assert all(secret not in p.read_text(errors="replace") for p in out.iterdir() if p.is_file())


def test_push_to_hub_errors_say_what_to_do(stories_run, tmp_path, monkeypatch):
    import huggingface_hub

    from tuneforge.export.hub import push_to_hub

    folder = tmp_path / "hf"
    assert invoke("export", stories_run, "--out", folder).exit_code == 0
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(TuneforgeError, match="not logged in"):
        push_to_hub(folder, "me/x", private=False)

    monkeypatch.setenv("HF_TOKEN", "hf_x")

    class Offline(FakeHub):
        def create_repo(self, repo_id, **kwargs):
            raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    with pytest.raises(TuneforgeError, match="could not reach the hub") as offline:
        push_to_hub(folder, "me/x", private=False)
    assert str(folder) in str(offline.value)

    from huggingface_hub.errors import HfHubHTTPError

    class Refused(FakeHub):
        def create_repo(self, repo_id, **kwargs):
            response = type("Response", (), {"status_code": 401, "headers": {}, "request": None})()
            raise HfHubHTTPError("401 Unauthorized", response=response)

    monkeypatch.setattr(huggingface_hub, "HfApi", Refused)
    with pytest.raises(TuneforgeError, match="token is invalid"):
        push_to_hub(folder, "me/x", private=False)


def test_gguf_base_trains_and_starts_from_the_same_loss_as_the_hf_base(tmp_path, monkeypatch, capsys):
    gguf_folder = needs_shared("models", "stories260K-gguf")
    monkeypatch.setenv("TUNEFORGE_GGUF_CACHE", str(tmp_path / "gguf-cache"))
    hf = run_finetune(stories_config(max_steps=3, eval_steps=3, save_steps=3), tmp_path / "hf")
    config = stories_config(max_steps=3, eval_steps=3, save_steps=3)
    model = config.model.model_copy(
        update={"name_or_path": str(gguf_folder), "gguf_file": "stories260K.gguf"}
    )
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party_noise()  # as every command does
        gguf = run_finetune(config.model_copy(update={"model": model}), tmp_path / "gguf")
    assert gguf.global_step == 3
    assert not [w for w in seen if "vocabulary was not modified" in str(w.message)], (
        "peft's noise on each save"
    )
    # Its pad and separator ids (4294967295) point past the vocabulary: said, and left out of a cached copy.
    assert "past its 512-token vocabulary" in capsys.readouterr().out
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "gguf-cache").rglob("*"))
    assert abs(gguf.eval_before["eval_loss"] - hf.eval_before["eval_loss"]) <= 1e-3
    assert gguf.eval_after["eval_loss"] < gguf.eval_before["eval_loss"]
