"""The table of bad inputs that tests/test_bad_inputs.py runs through the real CLI: bad configs, data,
models, run directories and CLI calls, each with a builder (World -> CLI arguments) and the texts its
message must hold. World is what a case can point at: a tiny model, good data, a finished run, a folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from conftest import quick_config

from tuneforge.config.loading import config_to_yaml
from tuneforge.train.run import run_finetune


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@dataclass
class World:
    """What a case can point at: a tiny model, good data, a finished run, and a scratch folder."""

    model: Path
    data: Path
    eval_data: Path
    finished: Path
    tmp: Path
    processes: list = field(default_factory=list)

    def config(
        self, extra: str = "", *, model: object = None, data: object = None, name: str = "c.yaml"
    ) -> str:
        path = self.tmp / name
        config = quick_config(self.model, self.data, self.eval_data, train={"max_steps": 1})
        text = config_to_yaml(config)
        if model is not None:
            text = text.replace(f"name_or_path: {self.model}", f"name_or_path: {model}")
        if data is not None:  # and no separate eval file: the case is about this one
            text = text.replace(f"path: {self.data}", f"path: {data}").replace(
                f"eval_path: {self.eval_data}", "eval_path: null"
            )
        path.write_text(text + extra)
        return str(path)

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def train(self, config: str, *more: str) -> list[str]:
        return ["train", config, "--output-dir", str(self.tmp / "run"), *more]


def latin1(w: World) -> Path:
    return w.file("latin.csv", "prompt,completion\ncaf\xe9,ok\n".encode("latin-1"))


def pickle_only_model(w: World) -> Path:
    folder = w.tmp / "pickle-model"
    shutil.copytree(w.model, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return folder


def weightless_model(w: World) -> Path:
    folder = w.tmp / "no-weights"
    shutil.copytree(w.model, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    return folder


def unfinished_copy(w: World, status: str) -> Path:
    copy = w.tmp / f"run-{status}"
    shutil.copytree(w.finished, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "status": status, "error": "NaN at step 3"}))
    shutil.rmtree(copy / "adapter")
    return copy


def damaged_adapter_copy(w: World) -> Path:
    copy = w.tmp / "run-damaged"
    shutil.copytree(w.finished, copy)
    weights = copy / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return copy


def without_eval_split(w: World) -> Path:
    copy = w.tmp / "run-no-split"
    shutil.copytree(w.finished, copy)
    (copy / "eval_split.jsonl").unlink()
    return copy


def locked_copy(w: World) -> Path:
    """A copy of the run that another live process holds the lock of."""
    import subprocess
    import sys
    import time

    from tuneforge.run.lock import is_locked

    copy = w.tmp / "run-locked"
    shutil.copytree(w.finished, copy)
    hold = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(120)"
    )
    w.processes.append(subprocess.Popen([sys.executable, "-c", hold, str(copy / ".lock")]))
    while not is_locked(copy):
        time.sleep(0.05)
    return copy


def fifo_output(w: World) -> list[str]:
    """--output naming a named pipe: renaming onto it would replace it with a regular file."""
    import os

    pipe = w.tmp / "predictions.fifo"
    if not pipe.exists():
        os.mkfifo(pipe)
    return ["generate", str(w.finished), "--prompt", "count a.txt", "--output", str(pipe)]


def changed_data_run(w: World) -> list[str]:
    """A run stopped after a checkpoint whose training file was then edited, resumed to train longer."""
    data = w.file("train.jsonl", w.data.read_text())
    config = quick_config(w.model, data, w.eval_data, train={"max_steps": 2, "save_steps": 2})
    run = w.tmp / "run-changed"
    run_finetune(config, run)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    data.write_text(w.data.read_text().replace("ls -la", "ls -l"))
    longer = config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 4})})
    path = w.file("resume.yaml", config_to_yaml(longer))
    return ["train", str(path), "--output-dir", str(run), "--resume"]


CASES = {
    # config
    "config file missing": (
        lambda w: ["train", str(w.tmp / "nope.yaml")],
        ["config file not found", "nope.yaml"],
    ),
    "config not YAML": (
        lambda w: ["train", str(w.file("bad.yaml", "model: [unclosed"))],
        ["bad.yaml", "not valid YAML"],
    ),
    "a section written twice": (
        lambda w: ["train", w.config("train:\n  max_steps: 2\n", name="twice.yaml")],
        ["twice.yaml, line", "key 'train' is written twice (first on line"],
    ),
    "a key written twice in a section": (
        lambda w: [
            "train",
            str(w.file("dup.yaml", "model:\n  name_or_path: a\n  name_or_path: b\ndata:\n  path: d\n")),
        ],
        ["dup.yaml, line 3: key 'name_or_path' is written twice (first on line 2)"],
    ),
    "a number that is not finite": (
        lambda w: w.train(w.config(), "--set", "train.epochs=.inf"),
        ["train.epochs", "finite"],
    ),
    "generate --output onto a named pipe": (fifo_output, ["predictions.fifo", "not a regular file"]),
    "serve on a port that does not exist": (
        lambda w: ["serve", str(w.finished), "--port", "70000"],
        ["--port", "65535"],
    ),
    "config is a list": (
        lambda w: ["train", str(w.file("list.yaml", "- a\n- b\n"))],
        ["list.yaml", "mapping of sections"],
    ),
    "typo in a key": (
        lambda w: w.train(w.config(), "--set", "train.learnig_rate=1e-4"),
        ["train.learnig_rate", "did you mean 'learning_rate'"],
    ),
    "lora.rank for lora.r": (
        lambda w: w.train(w.config(), "--set", "lora.rank=8"),
        ["lora.rank", "did you mean 'r'"],
    ),
    "wrong value type": (
        lambda w: w.train(w.config(), "--set", "train.batch_size=abc"),
        ["train.batch_size", "valid integer"],
    ),
    "bad choice": (lambda w: w.train(w.config(), "--set", "quant.mode=3bit"), ["quant.mode", "3bit"]),
    "--set without =": (
        lambda w: w.train(w.config(), "--set", "nonsense"),
        ["--set 'nonsense'", "section.key=value"],
    ),
    "--set with broken YAML": (
        lambda w: w.train(w.config(), "--set", "lora.target_modules=[q_proj,"),
        ["lora.target_modules", "not valid YAML"],
    ),
    "--set into a value": (
        lambda w: w.train(w.config(), "--set", "train.max_steps.x=1"),
        ["'max_steps' is a value"],
    ),
    "4-bit full fine-tune": (
        lambda w: w.train(w.config(), "--set", "quant.mode=4bit", "--set", "lora.method=full"),
        ["needs lora.method=lora"],
    ),
    "path and mix both set": (
        lambda w: w.train(w.config(), "--set", "data.mix=[{path: a.jsonl}]"),
        ["exactly one of data.path"],
    ),
    "max_length too small": (
        lambda w: w.train(w.config(), "--set", "train.max_length=4"),
        ["train.max_length", "at least 8"],
    ),
    # data
    "data file missing": (
        lambda w: w.train(w.config(data=w.tmp / "nowhere.csv")),
        ["data file not found", "nowhere.csv"],
    ),
    "unsupported file type": (
        lambda w: w.train(w.config(data=w.file("d.txt", "hello"))),
        ["d.txt", "unsupported file type"],
    ),
    "malformed JSONL line": (
        lambda w: w.train(w.config(data=w.file("m.jsonl", '{"prompt": "a", "completion": "b"}\n{oops}\n'))),
        ["m.jsonl:2", "invalid JSON"],
    ),
    "JSON list item not an object": (
        lambda w: w.train(w.config(data=w.file("l.json", '[{"prompt": "a", "completion": "b"}, 3]'))),
        ["l.json", "item 1"],
    ),
    "empty JSONL": (lambda w: w.train(w.config(data=w.file("e.jsonl", ""))), ["e.jsonl", "no rows"]),
    "empty JSON list": (lambda w: w.train(w.config(data=w.file("e.json", "[]"))), ["e.json", "no rows"]),
    "latin-1 CSV": (lambda w: w.train(w.config(data=latin1(w))), ["latin.csv:2", "UTF-8"]),
    "latin-1 JSONL": (
        lambda w: w.train(
            w.config(data=w.file("l1.jsonl", '{"prompt": "caf\xe9", "completion": "x"}\n'.encode("latin-1")))
        ),
        ["l1.jsonl:1", "UTF-8"],
    ),
    "binary data file": (
        lambda w: w.train(w.config(data=w.file("b.jsonl", bytes(range(256)) * 4))),
        ["b.jsonl", "UTF-8"],
    ),
    "CSV row with extra fields": (
        lambda w: w.train(w.config(data=w.file("x.csv", "prompt,completion\na,b\nc,d,e\n"))),
        ["x.csv:3", "3 fields where the header has 2"],
    ),
    "missing column": (
        lambda w: w.train(
            w.config(data=w.file("q.jsonl", '{"question": "q", "answer": "a"}\n' * 4)),
            "--set",
            "data.format=prompt_completion",
        ),
        ["column 'prompt' not found", "question, answer"],
    ),
    "shape not recognised": (
        lambda w: w.train(w.config(data=w.file("s.jsonl", '{"q": "a", "r": "b"}\n' * 4))),
        ["cannot tell the shape", "data.format"],
    ),
    "sharegpt unknown speaker": (
        lambda w: w.train(
            w.config(
                data=w.file("sg.jsonl", json.dumps({"conversations": [{"from": "bot", "value": "x"}]}) + "\n")
            )
        ),
        ["sharegpt turn 'from' is 'bot'"],
    ),
    "conversation ending with the user": (
        lambda w: w.train(
            w.config(
                data=w.file("u.jsonl", json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
            )
        ),
        ["row 0", "must end with an assistant turn"],
    ),
    "every answer empty": (
        lambda w: w.train(w.config(data=w.file("n.jsonl", '{"prompt": "a", "completion": ""}\n' * 4))),
        ["no row has an answer to train on"],
    ),
    "broken template file": (
        lambda w: w.train(
            w.config(), "--set", f"data.template={w.file('t.jinja', '{% for m in messages %}{{ m.content ')}"
        ),
        ["t.jinja", "line 1"],
    ),
    "template file missing": (
        lambda w: w.train(w.config(), "--set", f"data.template={w.tmp / 'gone.jinja'}"),
        ["template file not found", "gone.jinja"],
    ),
    "prompt_format names a missing column": (
        lambda w: w.train(w.config(), "--set", "data.prompt_format='Q: {question}'"),
        ["column 'question' not found"],
    ),
    "unquoted value YAML reads as a mapping": (
        lambda w: w.train(w.config(), "--set", "data.prompt_format=Q: {question}"),
        ["data.prompt_format", "quote the whole value"],
    ),
    "eval file missing": (
        lambda w: w.train(w.config(), "--set", f"data.eval_path={w.tmp / 'noeval.jsonl'}"),
        ["data file not found", "noeval.jsonl"],
    ),
    "preflight failure in tuneforge data": (
        lambda w: [
            "data",
            w.config(
                data=w.file("p.jsonl", '{"prompt": "a", "completion": "b"}\n' * 9 + '{"prompt": "c"}\n')
            ),
            "--set",
            "data.eval_fraction=0",
        ],
        ["preflight failed", "trained_tokens"],
    ),
    # model
    "model folder missing": (
        lambda w: w.train(w.config(model="./no/such/model")),
        ["model folder not found", "no/such/model"],
    ),
    "folder without config.json": (
        lambda w: w.train(w.config(model=w.tmp)),
        ["no config.json", "model.name_or_path"],
    ),
    "model folder without weights": (
        lambda w: w.train(w.config(model=weightless_model(w))),
        ["no-weights", "no weights"],
    ),
    "pickle-only weights": (
        lambda w: w.train(w.config(model=pickle_only_model(w))),
        ["pytorch_model.bin", "model.allow_pickle"],
    ),
    "GGUF file as the model": (
        lambda w: w.train(w.config(model=w.file("m.gguf", b"GGUF\x03\x00"))),
        ["m.gguf", "GGUF"],
    ),
    "hub model offline": (
        lambda w: w.train(w.config(model="nobody/no-such-model-xyz")),
        ["nobody/no-such-model-xyz", "model.name_or_path"],
    ),
    "plan on a hub model offline": (
        lambda w: ["plan", w.config(model="nobody/no-such-model-xyz"), "--set", "train.max_length=64"],
        ["nobody/no-such-model-xyz", "model.name_or_path"],
    ),
    "LoRA target matching nothing": (
        lambda w: w.train(w.config(), "--set", "lora.target_modules=[qkv_proj]"),
        ["'qkv_proj' matches no linear layer", "q_proj"],
    ),
    "LoRA target naming a block": (
        lambda w: w.train(w.config(), "--set", "lora.target_modules=[mlp]"),
        ["'mlp' names a LlamaMLP block"],
    ),
    "modules_to_save unknown": (
        lambda w: w.train(w.config(), "--set", "lora.modules_to_save=[wte]"),
        ["lora.modules_to_save", "'wte'"],
    ),
    # run directory
    "--output-dir is a file": (
        lambda w: ["train", w.config(), "--output-dir", str(w.file("afile", "x"))],
        ["afile is a file"],
    ),
    "--overwrite on an unrelated folder": (
        lambda w: [
            "train",
            w.config(),
            "--output-dir",
            str(w.file("notes/keep.txt", "mine").parent),
            "--overwrite",
        ],
        ["not a tuneforge run", "nothing was changed"],
    ),
    "--overwrite with --resume": (
        lambda w: ["train", w.config(), "--output-dir", str(w.finished), "--overwrite", "--resume"],
        ["pass one of them"],
    ),
    "--overwrite a finished run with a missing model": (
        lambda w: ["train", w.config(model="./gone-model"), "--output-dir", str(w.finished), "--overwrite"],
        ["model folder not found", "gone-model"],
    ),
    "--overwrite a finished run with a missing data file": (
        lambda w: [
            "train",
            w.config(data=w.tmp / "gone.jsonl"),
            "--output-dir",
            str(w.finished),
            "--overwrite",
        ],
        ["data file not found"],
    ),
    "--overwrite the working directory": (
        lambda w: ["train", w.config(), "--output-dir", ".", "--overwrite"],
        ["refusing to use", "working directory"],
    ),
    "train into a finished run": (
        lambda w: ["train", w.config(), "--output-dir", str(w.finished)],
        ["holds a finished run", "--overwrite"],
    ),
    "--resume without a checkpoint": (
        lambda w: ["train", w.config(), "--output-dir", str(w.tmp / "fresh"), "--resume"],
        ["no complete checkpoint"],
    ),
    "--resume a finished run": (
        lambda w: [
            "train",
            w.config(),
            "--output-dir",
            str(w.finished),
            "--resume",
            "--set",
            "train.max_steps=2",  # as the run had: nothing left to train
        ],
        ["already finished", "train.max_steps"],
    ),
    "--resume a finished run with fewer steps": (
        lambda w: ["train", w.config(), "--output-dir", str(w.finished), "--resume"],
        ["already finished", "train.max_steps"],
    ),
    "--resume with another config": (
        lambda w: ["train", w.config(), "--output-dir", str(w.finished), "--resume", "--set", "lora.r=8"],
        ["lora.r changed"],
    ),
    "--resume after the data changed": (changed_data_run, ["train.jsonl changed since the run started"]),
    "run directory in use": (
        lambda w: ["train", w.config(), "--output-dir", str(locked_copy(w)), "--overwrite"],
        ["in use by another tuneforge process"],
    ),
    # generate
    "eval on a run without held-out rows": (
        lambda w: ["eval", str(without_eval_split(w))],
        ["no saved eval split", "--data FILE"],
    ),
    "eval with an unknown metric": (
        lambda w: ["eval", str(w.finished), "--metrics", "meteor"],
        ["--metrics 'meteor'", "rougeL"],
    ),
    "eval --set outside the eval section": (
        lambda w: ["eval", str(w.finished), "--set", "train.max_steps=3"],
        ["--set 'train.max_steps=3'", "only eval keys"],
    ),
    "generate on a folder that is not a run": (
        lambda w: ["generate", str(w.tmp), "--prompt", "hi"],
        ["not a finished tuneforge run"],
    ),
    "generate with nothing to generate": (lambda w: ["generate", str(w.finished)], ["--prompt"]),
    "generate --input missing": (
        lambda w: ["generate", str(w.finished), "--input", str(w.tmp / "in.jsonl")],
        ["input file not found", "in.jsonl"],
    ),
    "generate --input binary": (
        lambda w: ["generate", str(w.finished), "--input", str(w.file("bin.jsonl", bytes(range(256))))],
        ["bin.jsonl", "UTF-8"],
    ),
    "generate --input without the columns": (
        lambda w: ["generate", str(w.finished), "--input", str(w.file("c.jsonl", '{"q": 1}\n'))],
        ["c.jsonl", "rows need the columns"],
    ),
    "generate --output into a missing folder": (
        lambda w: [
            "generate",
            str(w.finished),
            "--prompt",
            "hi",
            "--output",
            str(w.tmp / "nodir" / "x.jsonl"),
        ],
        ["nodir", "does not exist"],
    ),
    "generate on a failed run": (
        lambda w: ["generate", str(unfinished_copy(w, "failed")), "--prompt", "hi"],
        ["did not finish", "failed: NaN at step 3"],
    ),
    "generate on an interrupted run": (
        lambda w: ["generate", str(unfinished_copy(w, "interrupted")), "--prompt", "hi"],
        ["did not finish", "--resume"],
    ),
    "generate with a damaged adapter": (
        lambda w: ["generate", str(damaged_adapter_copy(w)), "--prompt", "hi"],
        ["adapter", "cannot be loaded"],
    ),
}
