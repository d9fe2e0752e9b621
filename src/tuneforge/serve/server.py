"""Open the models a command serves, with the engine and its limits, and run the HTTP server.

tuneforge serve runs/a runs/b --port 8000 --api-key KEY
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.config.loading import load_config, with_overrides
from tuneforge.config.schema import ServeConfig
from tuneforge.errors import TuneforgeError
from tuneforge.infer.load import EXPORT_CONFIG, is_hf_export
from tuneforge.run.directory import RunDir
from tuneforge.serve.engine import Engine
from tuneforge.serve.models import load_models


def serve_limits(first: Path, overrides: list[str]) -> ServeConfig:
    """The first model's `serve` section, with --set serve.KEY=VALUE applied."""
    config_file = first / EXPORT_CONFIG if is_hf_export(first) else RunDir(first).config
    if not config_file.is_file():
        raise TuneforgeError(f"{first} is neither a tuneforge run nor an hf export (no {config_file.name})")
    return with_overrides(load_config(config_file), overrides, ("serve",), source="--set").serve


def open_engine(paths: list[Path], overrides: list[str], trust_remote_code: bool = False) -> Engine:
    if not paths:
        raise TuneforgeError("give at least one run directory or hf export")
    limits = serve_limits(paths[0], overrides)
    return Engine(load_models(paths, trust_remote_code), limits).start()


def run_server(engine: Engine, host: str, port: int, api_key: str | None) -> None:
    import uvicorn

    from tuneforge.serve.routes import build_app

    uvicorn.run(build_app(engine, api_key), host=host, port=port, log_level="warning")
