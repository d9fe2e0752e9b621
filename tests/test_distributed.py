"""Several processes through `tuneforge train --nproc 2` (torchrun, DDP over gloo on this CPU).

The reference is one process with the same global batch (per-device batch × accumulation × processes)
and seed: the same samples make every optimizer step, so the adapters differ only by the order in which
floating-point sums are reduced (two half-batch gradients all-reduced, against one accumulated sum), a
few float32 rounding steps that Adam carries through the run. TOLERANCE bounds that: measured here at
about 1e-7 after 8 steps, against weights that move by ~1e-2 in those steps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import quick_config, write_jsonl
from safetensors.torch import load_file

from tuneforge.config.loading import config_to_yaml
from tuneforge.run.checkpoints import checkpoint_dirs, problem

TOLERANCE = 1e-5
KILL_AT_STEP = """
import os, signal, sys
from transformers import TrainerCallback
from tuneforge.config.loading import load_config
from tuneforge.train.run import run_finetune

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[3]) and state.is_world_process_zero:
            os.kill(os.getpid(), signal.SIGKILL)

run_finetune(load_config(sys.argv[1]), sys.argv[2], extra_callbacks=[Kill()])
"""
MAX_STEPS, SAVE_EVERY = 8, 2  # 48 rows / global batch 8 = 6 steps per epoch: into the second epoch


@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    train = [{"prompt": f"count the lines in f{i}.txt {'please ' * (i % 7)}", "completion": f"wc -l f{i}.txt"}
             for i in range(48)]  # fmt: skip
    held_out = [{"prompt": f"delete g{i}.txt", "completion": f"rm g{i}.txt"} for i in range(8)]
    rows = write_jsonl(folder / "train.jsonl", train), write_jsonl(folder / "eval.jsonl", held_out)
    two = config(tiny_models, rows, batch_size=4, grad_accumulation=1)  # × 2 processes = 8
    one = config(tiny_models, rows, batch_size=4, grad_accumulation=2)  # × 1 process = 8
    paths = {}
    for name, cfg in (("two", two), ("one", one)):
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(config_to_yaml(cfg))
    return folder, paths


def config(tiny_models, rows, **train):
    return quick_config(
        tiny_models("llama"),
        *rows,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},  # frozen head: the selective loss, through DDP's forward
        # generation metrics at each evaluation: each process generates half the rows, then they gather
        eval={"during_training": True, "sample_size": 8, "max_new_tokens": 6},
        train={
            "max_steps": MAX_STEPS,
            "save_steps": SAVE_EVERY,
            "eval_steps": 4,
            "logging_steps": 1,
            "max_length": "auto",
            **train,
        },
    )


def tuneforge(*args: str, cache: Path, **popen) -> subprocess.Popen:
    env = {
        **os.environ,
        "TUNEFORGE_CACHE": str(cache),
        "HF_DATASETS_CACHE": str(cache / "hf"),
        "COLUMNS": "120",
    }
    command = [sys.executable, "-m", "tuneforge.cli", "train", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def runs(setup):
    folder, paths = setup
    # Separate caches: both runs tokenize, so their consoles can be compared line for line.
    two_args = [str(paths["two"]), "--nproc", "2", "--output-dir", str(folder / "two")]
    two = finish(tuneforge(*two_args, cache=folder / "cache"))
    one = finish(
        tuneforge(str(paths["one"]), "--output-dir", str(folder / "one"), cache=folder / "cache-one")
    )
    return {"two": folder / "two", "one": folder / "one", "two_log": two, "one_log": one}


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def shape_of(line: str) -> str:
    """A console line with its numbers (losses, times, rates) blanked, to compare two runs' lines."""
    return re.sub(r"[\d.]+", "#", line.strip())


def test_two_processes_train_one_run_like_one_process_with_the_same_global_batch(runs, setup):
    folder, _ = setup
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["cache", "cache-one", "one", "two"], (
        "one run dir each"
    )
    difference = max_difference(adapter(runs["two"]), adapter(runs["one"]))
    print(f"max |two processes - one process| = {difference:.3g}")
    assert difference <= TOLERANCE
    moved = max_difference(adapter(runs["one"]), load_file_initial(runs["one"]))
    assert moved > 100 * TOLERANCE, "the tolerance is far below how much training moves the weights"

    manifest = json.loads((runs["two"] / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == MAX_STEPS
    assert manifest["processes"] == {
        "strategy": "ddp", "world_size": 2, "per_device_batch": 4, "grad_accumulation": 1, "global_batch": 8,
    }  # fmt: skip
    lines = [json.loads(line) for line in (runs["two"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == list(range(1, MAX_STEPS + 1)), "each step once"
    assert [r["step"] for r in lines if "eval_loss" in r] == [0, 4, 8], "each evaluation once"
    scored = [{k: v for k, v in r.items() if k.startswith("eval_") and "loss" not in k and "_per_" not in k
               and "runtime" not in k and "time" not in k} for r in lines if "eval_chrf" in r]  # fmt: skip
    alone = [json.loads(line) for line in (runs["one"] / "metrics.jsonl").read_text().splitlines()]
    assert len(scored) == 3 and scored == [{k: r[k] for k in scored[0]} for r in alone if "eval_chrf" in r], (
        "the gathered generations score as one process's do"
    )


def load_file_initial(run_dir: Path) -> dict[str, torch.Tensor]:
    """The adapter at its first checkpoint: a yardstick for how far training moves the weights."""
    first = min(checkpoint_dirs(run_dir / "checkpoints"), key=lambda p: int(p.name.split("-")[1]))
    return load_file(first / "adapter_model.safetensors")


def test_the_console_says_each_thing_once(runs):
    two, one = (
        Counter(map(shape_of, runs["two_log"].splitlines())),
        Counter(map(shape_of, runs["one_log"].splitlines())),
    )
    repeated = {
        line: n
        for line, n in two.items()
        if n > 1 and n > one[line] and re.search("[a-z]", line) and "torch" not in line
    }
    assert not repeated, f"lines printed more often with two processes than with one: {repeated}"
    assert runs["two_log"].count("done:") == 1 and runs["two_log"].count("held-out loss") == 1
    assert (
        "2 processes (ddp) · global batch 8 = 4 per device × 1 accumulation × 2 processes" in runs["two_log"]
    )
    assert "(process 1)" not in runs["two_log"]


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_adapter(runs, setup):
    folder, paths = setup
    run_dir = folder / "killed"
    # Rank 0 is SIGKILLed at the end of step 5 (checkpoint 4 is sealed), as on a lost machine; the
    # launcher then stops rank 1.
    (folder / "kill.py").write_text(KILL_AT_STEP)
    script = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
              str(folder / "kill.py"), str(paths["two"]), str(run_dir), "5"]  # fmt: skip
    env = {**os.environ, "TUNEFORGE_CACHE": str(folder / "cache"), "HF_DATASETS_CACHE": str(folder / "hf")}
    killed = subprocess.run(
        script, env=env, capture_output=True, text=True, timeout=600, start_new_session=True
    )
    assert killed.returncode != 0 and "exitcode: -9" in killed.stderr, killed.stderr[-3000:]
    checkpoint = run_dir / "checkpoints" / f"checkpoint-{2 * SAVE_EVERY}"
    assert problem(checkpoint) is None, "the run was killed after a complete checkpoint"
    state = json.loads((run_dir / "manifest.json").read_text())
    assert state["status"] == "running" and state.get("global_step") is None
    shutil.copytree(run_dir, folder / "killed-copy")  # resumed by one process in the next test

    resumed = finish(tuneforge(str(paths["two"]), "--nproc", "2", "--output-dir", str(run_dir), "--resume",
                               cache=folder / "cache"))  # fmt: skip
    assert "resuming from" in resumed
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == MAX_STEPS
    difference = max_difference(adapter(run_dir), adapter(runs["two"]))
    print(f"max |resumed - uninterrupted| = {difference:.3g}")
    assert difference <= TOLERANCE
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == list(range(1, MAX_STEPS + 1))


def test_one_process_resumes_a_two_process_run_with_the_same_global_batch(runs, setup):
    folder, paths = setup
    run_dir = folder / "killed-copy"
    if not run_dir.exists():
        pytest.skip("needs the killed run of the previous test")
    # Two processes × 4 × 1 before; one process must then accumulate 2 batches of 4.
    refused = subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "train", str(paths["two"]), "--output-dir", str(run_dir), "--resume"],
        capture_output=True, text=True, env={**os.environ, "TUNEFORGE_CACHE": str(folder / "cache")},
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout[-2000:]
    assert (
        "global batch of 8, now it would be 4" in refused.stdout and "grad_accumulation=2" in refused.stdout
    )
    finish(tuneforge(str(paths["one"]), "--output-dir", str(run_dir), "--resume", cache=folder / "cache"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["global_step"] == MAX_STEPS and manifest["resumes"][-1]["processes"]["world_size"] == 1
    assert max_difference(adapter(run_dir), adapter(runs["two"])) <= TOLERANCE


def test_ctrl_c_stops_every_process_at_one_checkpoint_and_says_how_to_resume(setup):
    folder, paths = setup
    run_dir = folder / "signalled"
    longer = [
        "--set",
        "train.max_steps=400",
        "--set",
        "train.save_steps=1000",
        "--set",
        "train.eval_steps=1000",
    ]
    process = tuneforge(
        str(paths["two"]), *longer, "--nproc", "2", "--output-dir", str(run_dir), cache=folder / "cache"
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        lines = (
            (run_dir / "metrics.jsonl").read_text().splitlines()
            if (run_dir / "metrics.jsonl").exists()
            else []
        )
        if any('"loss"' in line for line in lines[1:]):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # to the launcher, as a terminal's Ctrl-C; torchrun forwards it
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    step = manifest["global_step"]
    assert manifest["status"] == "interrupted" and 0 < step < 400, manifest
    assert problem(run_dir / "checkpoints" / f"checkpoint-{step}") is None, (
        "both processes stopped at one step"
    )
    assert "--nproc 2 --resume" in output.replace("\n", " "), output[-2000:]
    assert manifest["command"][-4:] == ["--nproc", "2", "--output-dir", str(run_dir)]


def test_dpo_on_two_processes_matches_one_process(tiny_models, tmp_path):
    """The reference pass splits the rows between the processes and gathers them back in order; the
    reward metrics are reduced over both. The reference log-probs differ from one process's only by
    padding (other rows share each batch), ~1e-6, which Adam carries to ~2e-5 in the adapter."""
    pairs = [{"prompt": f"how did kid {i} feel {'today ' * (i % 5)}?", "chosen": f"kid {i} was sad.",
              "rejected": f"kid {i} was happy."} for i in range(32)]  # fmt: skip
    rows = write_jsonl(tmp_path / "train.jsonl", pairs), write_jsonl(tmp_path / "eval.jsonl", pairs[:8])
    runs = {}
    for name, train in (("two", {"batch_size": 4}), ("one", {"batch_size": 4, "grad_accumulation": 2})):
        cfg = quick_config(
            tiny_models("llama"),
            *rows,
            lora={"dropout": 0.0},
            data={"preflight": {"overlap": "off"}},
            train={
                "method": "dpo",
                "max_steps": 6,
                "eval_steps": 3,
                "logging_steps": 1,
                "max_length": 128,
                **train,
            },
        )
        (tmp_path / f"{name}.yaml").write_text(config_to_yaml(cfg))
        nproc = ["--nproc", "2"] if name == "two" else []
        args = [str(tmp_path / f"{name}.yaml"), *nproc, "--output-dir", str(tmp_path / name)]
        finish(tuneforge(*args, cache=tmp_path / f"cache-{name}"))
        runs[name] = tmp_path / name
    references = [json.loads((runs[n] / "reference_logps.json").read_text()) for n in ("two", "one")]
    for split in ("train", "eval"):
        flat = [(a, b) for ra, rb in zip(references[0][split], references[1][split]) for a, b in zip(ra, rb)]
        assert len(flat) == 2 * len(references[1][split])
        assert max(abs(a - b) for a, b in flat) < 1e-4, "every row's reference, in the original order"
    assert max_difference(adapter(runs["two"]), adapter(runs["one"])) <= 1e-4
    logs = {n: [json.loads(line) for line in (runs[n] / "metrics.jsonl").open()] for n in runs}
    assert [r["step"] for r in logs["two"] if "loss" in r] == list(range(1, 7)), "each step logged once"
    evals = {n: [r for r in logs[n] if "eval_loss" in r] for n in runs}
    assert [r["step"] for r in evals["two"]] == [0, 3, 6]
    assert evals["two"][0]["eval_rewards/margins"] == pytest.approx(0.0, abs=1e-5), (
        "policy = reference at step 0"
    )
    for two, one in zip(evals["two"], evals["one"]):
        assert two["eval_rewards/margins"] == pytest.approx(one["eval_rewards/margins"], abs=1e-3)
        assert two["eval_logps/chosen"] == pytest.approx(one["eval_logps/chosen"], abs=1e-3)


def test_grpo_on_two_processes_matches_one_process(tiny_models, tmp_path):
    """Each process samples its half of a step's groups, each rollout from its own seed (its prompt's place
    in the global batch), so two processes draw the completions one process draws: the same rewards at
    every step, and the adapter within the tolerance of reduced sums (padding differs by batch, ~1e-6)."""
    rows = [{"prompt": f"count the lines in f{i}.txt", "completion": f"wc -l f{i}.txt"} for i in range(16)]
    # a held-out file, so all 16 rows train: 4 whole global batches (a last, short one would be topped up
    # on the second process only, as DDP does for every method)
    paths = write_jsonl(tmp_path / "rows.jsonl", rows), write_jsonl(tmp_path / "held.jsonl", rows[:2])
    runs = {}
    for name, prompts in (("two", 2), ("one", 4)):
        cfg = quick_config(
            tiny_models("llama"),
            *paths,
            lora={"dropout": 0.0},
            train={
                "method": "grpo",
                "max_steps": 4,
                "save_steps": 4,
                "eval_steps": 4,
                "learning_rate": 1e-2,
                "batch_size": 4 * prompts,
            },  # fmt: skip
            grpo={
                "group_size": 4,
                "prompts_per_step": prompts,
                "max_completion_tokens": 6,
                "rewards": [{"kind": "length", "max_words": 2}],
                "mask_truncated": False,
                "scale_rewards": "batch",
            },  # fmt: skip (batch: the std over both processes' rewards)
        )
        (tmp_path / f"{name}.yaml").write_text(config_to_yaml(cfg))
        nproc = ["--nproc", "2"] if name == "two" else []
        args = [str(tmp_path / f"{name}.yaml"), *nproc, "--output-dir", str(tmp_path / name)]
        finish(tuneforge(*args, cache=tmp_path / f"cache-{name}"))
        runs[name] = tmp_path / name
    logs = {n: [json.loads(line) for line in (runs[n] / "metrics.jsonl").open()] for n in runs}
    steps = {n: [r for r in logs[n] if "loss" in r] for n in runs}
    assert [r["step"] for r in steps["two"]] == [1, 2, 3, 4], "each step logged once"
    for key in ("reward", "completions/mean_length", "reward_std"):
        assert [r[key] for r in steps["two"]] == pytest.approx([r[key] for r in steps["one"]], abs=1e-6), key
    assert len({r["reward"] for r in steps["one"]}) > 1, "the samples change from step to step"
    assert max_difference(adapter(runs["two"]), adapter(runs["one"])) <= 1e-4
