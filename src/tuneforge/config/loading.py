"""Read a YAML config, apply `--set section.key=value` overrides, validate, explain errors.

Errors name the file, the dotted key and, for a typo, the closest valid key. A key written twice in one
mapping (a second `train:` section, or `lora.r` twice) is an error naming both lines: PyYAML would keep
the last one silently.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tuneforge.config.schema import RunConfig
from tuneforge.errors import TuneforgeError, os_fault


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class StrictLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key repeated in one mapping is an error."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merge keys may repeat
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool | type(None)):
                    continue  # an unhashable key: SafeLoader's own error says so below
                if key in first_line:
                    raise DuplicateKeyError(
                        None,
                        None,
                        f"key {key!r} is written twice (first on line {first_line[key] + 1}); the second would "
                        "silently replace the first: keep one and merge what they set",
                        key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str):
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    path = Path(path)
    text = read_config_text(path)
    try:
        raw = read_yaml(text) or {}
    except DuplicateKeyError as exc:
        raise TuneforgeError(f"{path}, line {exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise TuneforgeError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TuneforgeError(f"{path}: expected a mapping of sections (model:, data:, ...) at the top level")
    for override in overrides or []:
        apply_override(raw, override)
    return validate_config(raw, source=str(path))


def read_config_text(path: Path) -> str:
    try:
        if path.is_file():
            return path.read_text()
        path.stat()  # is_file() reads a symlink loop or a file in place of a folder as "not there"
    except FileNotFoundError:
        pass
    except OSError as exc:  # no permission, a symlink loop, a file in place of a folder on the path
        fault = os_fault(exc, "config: ")
        if fault is None:
            raise
        raise fault from None
    raise TuneforgeError(f"config file not found: {path}")


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set one dotted key; the value is parsed as YAML so `8`, `true`, `[q_proj, v_proj]` and `null` work."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise TuneforgeError(f"--set {override!r}: expected section.key=value, e.g. --set train.max_steps=20")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise TuneforgeError(f"--set {override!r}: {part!r} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = read_yaml(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise TuneforgeError(
            f"--set {override!r}: the value of {key.strip()} is not valid YAML ({exc.problem}). Close the brackets, "
            f"or quote it: --set '{key.strip()}=\"...\"'"
        ) from None


def with_overrides(
    config: RunConfig, overrides: list[str], allowed: tuple[str, ...], source: str
) -> RunConfig:
    """A saved run's config with `--set` overrides applied to the sections a command may change."""
    for override in overrides:
        if override.split(".", 1)[0] not in allowed:
            raise TuneforgeError(f"--set {override!r}: here only {', '.join(allowed)} keys may be set")
    raw = config.model_dump(mode="json")
    for override in overrides:
        apply_override(raw, override)
    return validate_config(raw, source=source)


def validate_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [describe_error(err) for err in exc.errors()]
        raise TuneforgeError(
            f"{source}: invalid config\n" + "\n".join(f"  - {line}" for line in lines)
        ) from None


# Names other tools use for our keys: a typo suggestion would miss these (lora.rank looks like 'dora').
ALIASES = {
    "rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "lr": "learning_rate",
    "num_train_epochs": "epochs", "num_epochs": "epochs", "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accumulation", "max_seq_length": "max_length", "seq_len": "max_length",
    "warmup_ratio": "warmup", "warmup_steps": "warmup", "lr_scheduler_type": "scheduler", "optim": "optimizer",
    "model_name": "name_or_path", "model_name_or_path": "name_or_path", "dataset": "path",
}  # fmt: skip


def describe_error(err: dict[str, Any]) -> str:
    loc = [str(part) for part in err["loc"]]
    dotted = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        valid = valid_keys_at(loc[:-1])
        alias = ALIASES.get(loc[-1])
        hint = [alias] if alias in valid else difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        suggestion = f"did you mean {hint[0]!r}? " if hint else ""
        return f"unknown key {dotted!r}: {suggestion}valid keys here: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"missing required key {dotted!r}"
    quote = (
        " (YAML read it as a mapping or list: quote the whole value)"
        if isinstance(err.get("input"), (dict, list)) and err["type"] == "string_type"
        else ""
    )
    return f"{dotted}: {err['msg']} (got {err.get('input')!r}){quote}"


def valid_keys_at(loc: list[str]) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
