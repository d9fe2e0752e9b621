"""The New run form: its fields, their defaults (the config schema's, as the CLI uses them), and the one
way they become a run config: a dict validated by the config stage, written as the YAML `tuneforge train`
reads.

    form = RunForm(name="demo", base="models/tiny-llama", data="data/demo/train.jsonl")
    config = form.config(workspace)          # RunConfig, or a TuneforgeError naming the field
    text = config_to_yaml(config)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.columns import ColumnsConfig
from tuneforge.config.loading import apply_override, validate_config
from tuneforge.config.schema import LoraConfig, RunConfig, TrainConfig
from tuneforge.errors import TuneforgeError
from tuneforge.studio.workspace import Workspace

ADAPTERS = ("lora", "qlora", "full")  # qlora: LoRA on a 4-bit base; full: every weight trained
LORA, TRAIN = LoraConfig.model_fields, TrainConfig.model_fields
COLUMN_FIELDS = tuple(ColumnsConfig.model_fields)


def column_shapes(name: str) -> tuple[str, ...]:
    """The shapes a data.columns field serves, as its description names them ("alpaca: ...",
    "messages, sharegpt: ..."): the schema says which column pickers a shape needs."""
    prefix = ColumnsConfig.model_fields[name].description.split(":", 1)[0]
    return tuple(part.strip() for part in prefix.split(","))


@dataclass
class RunForm:
    name: str = "my-run"
    base: str = ""
    data: str = ""
    format: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)  # only the ones that differ from the defaults
    template: str = "auto"
    method: str = TRAIN["method"].default
    adapter: str = "lora"
    r: int = LORA["r"].default
    alpha: float = LORA["alpha"].default
    dropout: float = LORA["dropout"].default
    target_modules: str = LORA["target_modules"].default
    epochs: float = TRAIN["epochs"].default
    max_steps: int = 0  # 0: none, epochs decide
    learning_rate: float = TRAIN["learning_rate"].default
    batch_size: int = TRAIN["batch_size"].default
    max_length: str = str(TRAIN["max_length"].default)
    extra: str = ""  # one `section.key=value` a line, as `--set`

    def raw(self, workspace: Workspace) -> dict[str, Any]:
        """The config as YAML would hold it; paths stay as typed (relative to the workspace)."""
        base = self.base.strip()
        if not base:
            raise TuneforgeError("Base model: choose a local folder, a .gguf file or type a hub id")
        if looks_like_path(base, workspace):
            workspace.inside(base, "Base model")
        if looks_like_path(self.data.strip(), workspace) or not self.data.strip():
            workspace.inside(self.data, "Data file")
        if self.template.endswith((".jinja", ".j2")):
            workspace.inside(self.template, "Template")
        data: dict[str, Any] = {"path": self.data.strip(), "format": self.format, "template": self.template}
        defaults = ColumnsConfig()
        columns = {k: v for k, v in self.columns.items() if v and v != getattr(defaults, k)}
        if columns:
            data["columns"] = columns
        lora = {"method": "full" if self.adapter == "full" else "lora"}
        if self.adapter != "full":
            targets = self.target_modules.strip()
            lora |= {"r": int(self.r), "alpha": float(self.alpha), "dropout": float(self.dropout)}
            lora["target_modules"] = targets if targets == "all-linear" else split_names(targets)
        train = {
            "method": self.method,
            "epochs": float(self.epochs),
            "learning_rate": float(self.learning_rate),
        }
        train |= {"batch_size": int(self.batch_size), "max_length": length(self.max_length)}
        if self.max_steps:
            train["max_steps"] = int(self.max_steps)
        raw = {"model": {"name_or_path": base}, "data": data, "lora": lora, "train": train}
        if self.adapter == "qlora":
            raw["quant"] = {"mode": "4bit"}
        for number, line in enumerate(self.extra.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    apply_override(raw, line.strip())
                except TuneforgeError as exc:
                    raise TuneforgeError(f"Extra settings, line {number}: {exc}") from None
        check_paths(raw, workspace)
        return raw

    def config(self, workspace: Workspace) -> RunConfig:
        return validate_config(self.raw(workspace), source="the form")


def check_paths(raw: dict[str, Any], workspace: Workspace) -> None:
    """Every file the finished config names, the extra settings' included, stays in the workspace; model
    code from the hub is the CLI's to allow (`--trust-remote-code` is the user's own consent there)."""
    model, data = raw.get("model") or {}, raw.get("data") or {}
    if model.get("trust_remote_code"):
        raise TuneforgeError(
            "model.trust_remote_code runs the model's own code: use `tuneforge train` for it"
        )
    named = [("model.name_or_path", model.get("name_or_path")), ("model.adapter", model.get("adapter"))]
    sources = [data, *(data.get("mix") or [])]
    named += [(f"data.{key}", source.get(key)) for source in sources for key in ("path", "completion_path")]
    named += [(f"data.{key}", data.get(key)) for key in ("eval_path", "eval_completion_path")]
    named += [
        ("a reward's file", reward.get("file")) for reward in (raw.get("grpo") or {}).get("rewards") or []
    ]
    template = str(data.get("template") or "")
    named += [("data.template", template)] if template.endswith((".jinja", ".j2")) else []
    named += [("run_dir", raw.get("run_dir"))]
    for key, value in named:
        if value and looks_like_path(str(value), workspace):
            workspace.inside(str(value), key)


def looks_like_path(text: str, workspace: Workspace) -> bool:
    """A hub id is OWNER/NAME and names nothing on disk; anything else is a path to check."""
    hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith(".gguf")
    return not hub_id or (workspace.root / text).exists()


def split_names(text: str) -> list[str]:
    return [name.strip() for name in text.replace(",", " ").split() if name.strip()]


def length(text: str) -> int | str:
    text = str(text).strip()
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise TuneforgeError(f"Max length {text!r}: a number of tokens, or auto") from None
