"""End to end on tiny local models: the run directory, refusal to overwrite, generation, QLoRA, resume."""

import json

import bitsandbytes as bnb
import pytest
import torch
from conftest import quick_config
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.run.directory import RunDir
from tuneforge.train.run import run_finetune

runner = CliRunner()


@pytest.fixture(scope="module")
def finished_run(tiny_models, demo_files, tmp_path_factory):
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 6})
    run_dir = tmp_path_factory.mktemp("run") / "quick"
    result = run_finetune(config, run_dir)
    return result


def test_run_directory_holds_every_artifact(finished_run):
    run = RunDir(finished_run.run_dir)
    for path in (run.config, run.manifest, run.metrics, run.loss_plot):
        assert path.is_file() and path.stat().st_size > 0, path
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (run.adapter / name).is_file(), name
    assert "### Response:" in (run.adapter / "chat_template.jinja").read_text(), (
        "the template used travels along"
    )
    assert sorted(p.name for p in run.checkpoints.iterdir())[-1] == "checkpoint-6"
    assert any(run.tensorboard.glob("events.out.tfevents.*"))
    manifest = json.loads(run.manifest.read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == 6
    assert manifest["versions"]["transformers"] and manifest["seed"] == 42
    assert manifest["rows"] == {"train": 160, "eval": 24}
    assert {f["path"].rsplit("/", 1)[-1] for f in manifest["data_files"]} == {"train.jsonl", "eval.jsonl"}
    assert all(len(f["sha256"]) == 64 for f in manifest["data_files"])
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert any("loss" in r for r in records) and any(r.get("eval_loss") and r["step"] == 0 for r in records)


def test_finished_run_is_not_overwritten(finished_run, tiny_models, demo_files):
    config = quick_config(tiny_models("llama"), *demo_files)
    before = (RunDir(finished_run.run_dir).adapter / "adapter_model.safetensors").read_bytes()
    with pytest.raises(Exception, match="holds a finished run"):
        run_finetune(config, finished_run.run_dir)
    assert (RunDir(finished_run.run_dir).adapter / "adapter_model.safetensors").read_bytes() == before


def reference_generation(run_dir, prompt: str, max_new_tokens: int) -> str:
    """What a plain transformers + peft user gets from the run: no tuneforge code involved."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.config.loading import load_config

    config = load_config(run_dir / "config.yaml")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    base = AutoModelForCausalLM.from_pretrained(config.model.name_or_path)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert ids[0] == tokenizer.bos_token_id  # the template writes BOS itself: no hand-added BOS needed
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()


def test_generate_cli_reads_the_run(finished_run, tmp_path):
    # A prompt the reference model answers with at least one token, so an empty output cannot pass.
    prompt, expected = next(
        (p, text)
        for p in ("delete a.txt", "count the lines in b.txt", "list the files in /tmp", "show c.log")
        if (text := reference_generation(finished_run.run_dir, p, max_new_tokens=8))
    )
    prompts = tmp_path / "in.jsonl"
    rows = [{"prompt": prompt, "completion": expected}, {"prompt": prompt, "completion": expected + " x"}]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    args = ["generate", str(finished_run.run_dir), "--input", str(prompts), "--output", str(out)]
    result = runner.invoke(app, [*args, "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["generation"] for row in written] == [expected, expected], "the run's adapter and prompt"
    assert written[0]["prompt"] == prompt and written[1]["completion"] == expected + " x"
    assert "exact match: 50.0% of 2" in result.output


def test_qlora_nf4_double_quant_trains_on_cpu(tiny_models, demo_files, tmp_path):
    config = quick_config(
        tiny_models("llama"),
        *demo_files,
        quant={"mode": "4bit", "quant_type": "nf4", "double_quant": True},
        train={"max_steps": 4, "eval_before_training": False},
    )
    captured = {}

    class Inspect(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
            captured["quantized_layers"] = len(layers)
            captured["quant_type"] = layers[0].weight.quant_type
            captured["double_quant"] = layers[0].weight.quant_state.nested

    run_finetune(config, tmp_path / "qlora", extra_callbacks=[Inspect()])
    assert captured == {"quantized_layers": 14, "quant_type": "nf4", "double_quant": True}
    adapter = load_file(tmp_path / "qlora" / "adapter" / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and all(torch.isfinite(t).all() for t in lora_b)
    assert any(t.abs().sum() > 0 for t in lora_b), "LoRA B starts at zero; training must have moved it"


def test_8bit_base_trains_on_cpu(tiny_models, demo_files, tmp_path):
    config = quick_config(
        tiny_models("llama"),
        *demo_files,
        quant={"mode": "8bit"},
        train={"max_steps": 2, "eval_before_training": False},
    )
    seen = {}

    class Inspect(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["int8_layers"] = sum(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())

    result = run_finetune(config, tmp_path / "int8", extra_callbacks=[Inspect()])
    assert seen["int8_layers"] == 14 and result.global_step == 2


def test_resume_refuses_a_changed_config(tiny_models, demo_files, tmp_path):
    config = quick_config(tiny_models("llama"), *demo_files, train={"max_steps": 2, "save_steps": 2})
    run_finetune(config, tmp_path / "run")
    changed = config.model_copy(update={"lora": config.lora.model_copy(update={"r": 8})})
    with pytest.raises(Exception, match=r"lora.r changed"):
        run_finetune(changed, tmp_path / "run", resume=True)
    longer = config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 4})})
    from rich.console import Console

    console = Console(record=True, width=300)
    assert run_finetune(longer, tmp_path / "run", resume=True, console=console).global_step == 4, (
        "extending max_steps of a finished run is allowed"
    )
    assert (
        "train.max_steps changed from 2 to 4: the learning-rate schedule is recomputed"
        in console.export_text()
    )
