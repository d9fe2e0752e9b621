"""A run config from what a notebook has at hand: a YAML path, a dict, or a RunConfig, with overrides as
nested sections (`train={"max_steps": 5}`), validated by the config stage as the CLI's `--set` is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.config.loading import load_config, validate_config
from tuneforge.config.schema import RunConfig
from tuneforge.errors import TuneforgeError

ConfigLike = str | Path | dict | RunConfig


def dotted(sections: dict[str, Any], prefix: str = "") -> list[str]:
    """{"train": {"max_steps": 5}} -> ["train.max_steps=5"], values written as JSON (which YAML reads)."""
    found = []
    for key, value in sections.items():
        if isinstance(value, dict) and value:
            found += dotted(value, f"{prefix}{key}.")
        else:
            found.append(f"{prefix}{key}={json.dumps(value, default=str)}")  # a Path as its text
    return found


def merged(raw: dict, overrides: dict) -> dict:
    out = dict(raw)
    for key, value in overrides.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def as_config(config: ConfigLike, **overrides: Any) -> RunConfig:
    if isinstance(config, (str, Path)):
        return load_config(Path(config), dotted(overrides))
    if isinstance(config, RunConfig):
        return validate_config(merged(config.model_dump(mode="json"), overrides), source="the config")
    if isinstance(config, dict):
        return validate_config(merged(config, overrides), source="the config")
    raise TuneforgeError(f"config: give a YAML path, a dict or a RunConfig, not {type(config).__name__}")
