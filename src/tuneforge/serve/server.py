"""Open the models a command serves, with the engine and its limits, and run the HTTP server.

TUNEFORGE_API_KEY=KEY tuneforge serve runs/a runs/b --port 8000
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tuneforge.config.loading import load_config, with_overrides
from tuneforge.config.schema import ServeConfig
from tuneforge.errors import TuneforgeError
from tuneforge.infer.engine import Engine, build_engine
from tuneforge.infer.load import EXPORT_CONFIG, is_hf_export, load_models
from tuneforge.run.directory import RunDir
from tuneforge.serve.access import API_KEY_ENV, check_exposure, check_port, reach, read_api_key


def serve_limits(first: Path, overrides: list[str]) -> ServeConfig:
    """The first model's `serve` section, with --set serve.KEY=VALUE applied."""
    config_file = first / EXPORT_CONFIG if is_hf_export(first) else RunDir(first).config
    if not config_file.is_file():
        raise TuneforgeError(f"{first} is neither a tuneforge run nor an hf export (no {config_file.name})")
    return with_overrides(load_config(config_file), overrides, ("serve",), source="--set").serve


def open_engine(
    paths: list[Path], overrides: list[str], trust_remote_code: bool = False, allow_base_change: bool = False
) -> Engine:
    if not paths:
        raise TuneforgeError("give at least one run directory or hf export")
    limits = serve_limits(paths[0], overrides)
    return build_engine(load_models(paths, trust_remote_code, allow_base_change), limits).start()


def run_server(engine: Engine, host: str, port: int, api_key: str | None) -> None:
    import uvicorn

    from tuneforge.serve.routes import build_app

    uvicorn.run(build_app(engine, api_key), host=host, port=port, log_level="warning")


def serve_models(
    paths: list[Path],
    *,
    host: str,
    port: int,
    api_key: str | None,
    api_key_file: Path | None = None,
    overrides: list[str],
    trust_remote_code: bool,
    console: Console,
    allow_base_change: bool = False,
) -> None:
    """`tuneforge serve`: the models behind the OpenAI-compatible server until it is stopped. Without a key
    it answers this machine only."""
    key = read_api_key(api_key, api_key_file)
    how = f"set ${API_KEY_ENV} (or --api-key-file PATH; --api-key shows in `ps`)"
    check_exposure(host, key is not None, how)
    check_port(host, port)
    engine = open_engine(paths, overrides, trust_remote_code, allow_base_change)
    needs = "key required" if key else "no key"
    console.print(
        f"serving {', '.join(engine.served)} on http://{host}:{port}/v1 ({reach(host)}, {needs})",
        highlight=False,
    )
    if not engine.served:
        raise TuneforgeError("nothing to serve")
    run_server(engine, host, port, key)
