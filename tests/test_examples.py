"""Every shipped example trains for 2 steps with its model swapped (via --set) for a tiny local model of
the same architecture and its data for a small file with the columns the example maps. No example can rot."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.config.loading import load_config
from tuneforge.data.shapes import required_columns

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARCH_OF_EXAMPLE = {
    "quickstart.yaml": "llama",
    "mistral7b_qlora_chatdoctor.yaml": "mistral",
    "phi2_qlora_dialogsum.yaml": "phi",
    "phi2_counselling.yaml": "phi",
    "mistral7b_instruct_law_titles.yaml": "mistral",
    "llama2_7b_sft.yaml": "llama",
    "distilgpt2_diseases_full.yaml": "gpt2",
    "dpo_qwen2_ultrafeedback.yaml": "qwen2",
    "dpo_quickstart.yaml": "llama",
    "kto_qwen2_kto_mix.yaml": "qwen2",
    "grpo_quickstart.yaml": "llama",
    "grpo_qwen_gsm8k.yaml": "qwen2",
    "tools_quickstart.yaml": "llama",
    "tools_qwen_glaive.yaml": "qwen2",
}


def test_every_example_is_registered_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(ARCH_OF_EXAMPLE)


def fake_rows(path: Path, columns: list[str], n: int = 12) -> Path:
    rows = []
    for i in range(n):
        row = {name: f"{name} {i}" for name in columns}
        if "messages" in columns:
            row["messages"] = [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tool_rows(path: Path, fmt: str, n: int = 12) -> Path:
    """Rows shaped as the tool examples' data: OpenAI messages with tool_calls and a tools list
    (tuneforge_dev.tool_data), or llamafactory/glaive_toolcall_en (sharegpt function_call / observation turns,
    the tools as a JSON string)."""
    tool = {"name": "count_lines", "description": "Count a file's lines",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}  # fmt: skip
    rows = []
    for i in range(n):
        call = {"name": "count_lines", "arguments": {"path": f"f{i}.txt"}}
        if fmt == "sharegpt":
            turns = [{"from": "human", "value": f"lines in f{i}.txt?"},
                     {"from": "function_call", "value": json.dumps(call)},
                     {"from": "observation", "value": json.dumps({"lines": i})},
                     {"from": "gpt", "value": f"f{i}.txt has {i} lines."}]  # fmt: skip
            rows.append({"conversations": turns, "tools": json.dumps([tool])})
        else:
            turns = [{"role": "user", "content": f"lines in f{i}.txt?"},
                     {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": call}]}]  # fmt: skip
            rows.append({"messages": turns, "tools": [{"type": "function", "function": tool}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def preference_rows(path: Path, method: str, n: int = 12) -> Path:
    """Rows shaped as the examples' hub datasets: trl-lib/ultrafeedback_binarized (chosen / rejected
    conversations whose shared user turn is the prompt), trl-lib/kto-mix-14k (prompt and completion as
    message lists, a boolean label)."""
    rows = []
    for i in range(n):
        user = {"role": "user", "content": f"question {i}"}
        if method == "kto":
            answer = [{"role": "assistant", "content": f"answer {i}"}]
            rows.append({"prompt": [user], "completion": answer, "label": i % 2 == 0})
        else:
            rows.append(
                {
                    "chosen": [user, {"role": "assistant", "content": f"good answer {i}"}],
                    "rejected": [user, {"role": "assistant", "content": f"bad answer {i}"}],
                    "score_chosen": 8.0,
                    "score_rejected": 3.0,
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", sorted(ARCH_OF_EXAMPLE))
def test_example_trains_two_steps_on_a_tiny_model(name, tiny_models, tmp_path, monkeypatch):
    monkeypatch.chdir(
        EXAMPLES.parent
    )  # examples name their files (a reward function) from the repository root
    config_path = EXAMPLES / name
    example = load_config(config_path)
    if name.startswith("tools_"):
        data_file = tool_rows(tmp_path / "rows.jsonl", example.data.format)
    elif example.train.method in ("sft", "grpo"):  # grpo: prompts, and the completion as their reference
        data_file = fake_rows(tmp_path / "rows.jsonl", required_columns(example.data.format, example.data))
    else:
        data_file = preference_rows(tmp_path / "rows.jsonl", example.train.method)
    overrides = {
        "model.name_or_path": tiny_models(ARCH_OF_EXAMPLE[name]),
        "data.path": data_file,
        "data.eval_path": "null",
        "data.eval_fraction": 0.25,
        "train.max_steps": 2,
        "train.max_length": 128,
        "model.adapter": "null",  # the run an example continues does not exist here
    }
    if name.startswith("tools_"):  # the tool schemas are in every prompt
        overrides["train.max_length"] = 512
    if name == "tools_qwen_glaive.yaml":  # the tiny qwen2's template renders no tools; Qwen2.5's own does
        overrides["data.template"] = "chatml"
    args = ["train", str(config_path), "--output-dir", str(tmp_path / "run")]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == 2
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.lora == example.lora and saved.quant == example.quant, "only model and data were swapped"
