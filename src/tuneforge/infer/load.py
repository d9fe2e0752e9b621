"""Load finished runs for inference: the base model plus the run's adapter, on this process's device,
with the tokenizer (and so the chat template) saved with the adapter. An `hf` export folder
(`tuneforge export`) loads too: the merged weights, with the run's config saved beside them.

`load_models` loads several runs and exports for an engine, each under a name. Runs that share a base
model (same model and quant sections) share one copy of it: the first run's adapter is loaded with peft,
every other run's is added beside it (peft multi-adapter), and the base itself is served under its own
name with the adapters switched off. An `hf` export and a full fine-tune are whole models, loaded alone.

    loaded = load_run("runs/quickstart")
    loaded = load_run("exports/quickstart")
    served = load_models([Path("runs/a"), Path("runs/b")])   # names: a, b, and the base's
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.config.loading import load_config
from tuneforge.config.schema import ModelConfig, QuantConfig, RunConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.errors import TuneforgeError
from tuneforge.model.base_pin import MANIFEST_KEY, pinned_base
from tuneforge.model.load import context_length, load_base_model, process_device, resolve_dtype
from tuneforge.model.weights import check_adapter_weights, model_folder_weights
from tuneforge.run.directory import RunDir
from tuneforge.run.lock import LOCK_NAME, holder
from tuneforge.run.manifest import read_manifest


def check_finished(run: RunDir) -> None:
    """A run to use must have finished; the refusal's advice fits the state it is in."""
    if not run.config.is_file() or not run.manifest.is_file():
        raise TuneforgeError(
            f"{run.root} is not a finished tuneforge run (needs config.yaml and manifest.json)"
        )
    status = run.status()
    if status == "finished" and run.adapter.is_dir():
        return
    if status == "damaged":
        adapter = "its adapter folder is there" if run.adapter.is_dir() else "it has no adapter folder"
        raise TuneforgeError(
            f"{run.damage()}, so tuneforge cannot tell whether this run finished ({adapter}). Restore "
            "manifest.json from a copy, or train again with --overwrite."
        )
    if status == "running":
        raise TuneforgeError(
            f"{run.root} is still training ({holder(run.root / LOCK_NAME)}); its adapter is written when it "
            "ends. Wait for it, or stop it (Ctrl-C saves a checkpoint) and use it after it finishes."
        )
    if status == "finished":
        raise TuneforgeError(
            f"{run.root} says it finished, but its adapter folder is missing; restore it from a copy, or train "
            "again with --overwrite."
        )
    error = read_manifest(run.manifest).get("error")
    raise TuneforgeError(
        f"{run.root} did not finish (status: {status}{': ' + error if error else ''}), so it has no adapter "
        "to use. Resume it with `tuneforge train CONFIG --output-dir " + str(run.root) + " --resume`."
    )


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: object
    config: RunConfig
    encoder: ChatEncoder
    data_format: str | None  # the row shape training detected, for reading input files the same way

    def served(self, name: str = "model") -> Served:
        """This run as an engine's one model, prompted as training prompted it."""
        return served_entry(
            name, self.model, active_adapter(self.model), self.encoder, self.config.data.system_prompt
        )


@dataclass
class Served:
    """One model an engine answers for, under a name."""

    name: str
    model: object  # a PeftModel shared by the adapters on one base, or a whole model
    adapter: str | None  # the peft adapter to activate; None: adapters off (the base) or a whole model
    encoder: ChatEncoder
    system_prompt: str | None  # the run's data.system_prompt, put first as training did
    stop_ids: list[int] = field(default_factory=list)
    context: int | None = None
    source: str = ""
    base_name: str | None = None  # the served name of this adapter's base, for base-vs-tuned answers

    @property
    def weights(self) -> int:
        """Requests for different weight objects never share a batch."""
        return id(self.model)


def active_adapter(model) -> str | None:
    """A lone run's own adapter, so an engine keeps it on; peft's disable_adapter() around the engine (eval's
    base) still turns it off, since the engine switches adapters only when another one is active."""
    return model.active_adapter if isinstance(model, PeftModel) else None


BaseWeights = Literal["trained", "unquantized", "dequantized"]

# What `tuneforge export --format hf` writes beside the merged weights.
EXPORT_INFO = "tuneforge_export.json"
EXPORT_CONFIG = "tuneforge_run.yaml"


@contextmanager
def loading(source: Path, hint: str) -> Iterator[None]:
    """What transformers, peft and safetensors raise for a damaged or mismatched folder, said as a user
    error that names the folder."""
    try:
        yield
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise TuneforgeError(f"{source} cannot be loaded ({type(exc).__name__}: {exc}); {hint}") from exc


def adapter_hint(config: RunConfig) -> str:
    return f"is it complete, and saved for this base model ({config.model.name_or_path})?"


def is_hf_export(folder: Path) -> bool:
    return (folder / EXPORT_INFO).is_file() and (folder / "config.json").is_file()


def load_export(folder: Path, base_only: bool = False, trust_remote_code: bool = False) -> LoadedRun:
    """A merged `hf` export: plain transformers weights, prompted exactly as the run was; `base_only`
    loads the base model the run started from instead, for comparisons."""
    config = load_config(folder / EXPORT_CONFIG)
    check_consent(config, folder / EXPORT_CONFIG, trust_remote_code)
    if not base_only:
        label = f"{folder} (model.allow_pickle is read from its {EXPORT_CONFIG})"
        weights = model_folder_weights(folder, config.model.allow_pickle, label)
    with loading(folder, "is it complete?"):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if base_only:
            model, _ = load_base_model(config.model, config.quant)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype="auto", trust_remote_code=config.model.trust_remote_code, **weights
            )
    if config.quant.mode == "none" or not base_only:  # quantized weights were placed as they loaded
        model.to(process_device())
    model.eval()
    data_format = json.loads((folder / EXPORT_INFO).read_text()).get("data_format")
    return LoadedRun(model, tokenizer, config, ChatEncoder(tokenizer), data_format)


def check_consent(config: RunConfig, source: Path, trust_remote_code: bool) -> None:
    if config.model.trust_remote_code and not trust_remote_code:
        raise TuneforgeError(
            f"{source} sets model.trust_remote_code: true, which runs code shipped with the model. "
            "If you trust it, pass --trust-remote-code."
        )


def check_adapter_covers(
    model: PeftModel, adapter: Path, base_name: str, adapter_name: str = "default"
) -> None:
    """peft leaves a layer the saved adapter has no weights for at its initial no-op, with a warning: an
    adapter saved for a shallower base, or a damaged file, would silently act as the base model."""
    weights = adapter / "adapter_model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), "pt") as saved_file:
            saved = set(saved_file.keys())
    elif (adapter / "adapter_model.bin").is_file():  # reached only with model.allow_pickle
        weights = adapter / "adapter_model.bin"
        saved = set(torch.load(weights, map_location="cpu", weights_only=True))
    else:
        raise TuneforgeError(f"{weights} is missing: the adapter folder is incomplete")
    # The names peft saves under (DoRA's included).
    adapted = set(get_peft_model_state_dict(model, adapter_name=adapter_name))
    missing = sorted(adapted - saved)
    if missing:
        raise TuneforgeError(
            f"{weights} has no weights for {len(missing)} of the {len(adapted)} adapter tensors this base needs "
            f"(e.g. {missing[0]}): it was saved for another base model than {base_name}, or it is damaged"
        )


def load_run(
    run_dir: str | Path,
    *,
    base_only: bool = False,
    base: BaseWeights = "trained",
    trust_remote_code: bool = False,
    allow_base_change: bool = False,
) -> LoadedRun:
    """A finished run (or an `hf` export of one). For a base trained in 4 or 8 bits, `base` picks the
    weights under the adapter: as trained (quantized), the original weights reloaded unquantized in the
    compute dtype, or the quantized weights dequantized to it (see tuneforge.export.merge). A run trained
    unquantized has one base. `trust_remote_code` is the user's own consent, which a run directory cannot
    give; so is `allow_base_change`, to load a base that differs from the one the run was trained on."""
    if is_hf_export(Path(run_dir)):
        return load_export(Path(run_dir), base_only, trust_remote_code)
    run = RunDir(Path(run_dir))
    check_finished(run)
    config = load_config(run.config)
    dequantize = base == "dequantized" and config.quant.mode != "none"
    if base == "unquantized" and config.quant.mode != "none":
        compute = config.quant.compute_dtype
        model_section = (
            config.model.model_copy(update={"dtype": compute}) if compute != "auto" else config.model
        )
        config = config.model_copy(update={"model": model_section, "quant": QuantConfig()})
    check_consent(config, run.config, trust_remote_code)
    whole = config.lora.method == "full" and not base_only  # the run's own weights, no base under them
    if whole:
        weights = model_folder_weights(run.adapter, config.model.allow_pickle, str(run.adapter))
    else:
        base_model = run_base(run, config.model, allow_base_change)
        if not base_only:
            check_adapter_weights(run.adapter, config.model.allow_pickle)
    tokenizer = AutoTokenizer.from_pretrained(run.adapter)  # holds the chat template training used
    with loading(run.adapter, adapter_hint(config)):
        if whole:
            model = AutoModelForCausalLM.from_pretrained(
                run.adapter, dtype=resolve_dtype(config.model.dtype), **weights
            )
        else:
            model, _ = load_base_model(base_model, config.quant)
            if dequantize:
                model = model.dequantize()
            if not base_only:
                model = PeftModel.from_pretrained(model, run.adapter)
                check_adapter_covers(model, run.adapter, config.model.name_or_path)
    if (
        config.quant.mode == "none" or dequantize
    ):  # quantized weights were placed on the device as they loaded
        model.to(process_device())
    model.eval()
    data_format = read_manifest(run.manifest).get("data_format")
    return LoadedRun(model, tokenizer, config, ChatEncoder(tokenizer), data_format)


def run_base(run: RunDir, model: ModelConfig, allow_base_change: bool) -> ModelConfig:
    """The run's model section, pointing at the base it was trained on wherever the run or the shell has
    moved; a base that changed since is refused unless allowed (tuneforge.model.base_pin)."""
    record = read_manifest(run.manifest).get(MANIFEST_KEY)
    return pinned_base(model, record, run.root, allow_change=allow_base_change)


def load_models(
    paths: list[Path], trust_remote_code: bool = False, allow_base_change: bool = False
) -> dict[str, Served]:
    """Runs and exports under their folder names; adapters on one base share it, and the base is served
    too (see the module docstring)."""
    served: dict[str, Served] = {}
    bases: dict[str, Served] = {}  # base key -> the base's own entry, holding the shared PeftModel
    for path in paths:
        name = path.resolve().name
        if name in served:
            raise TuneforgeError(
                f"two models are named {name!r} ({path}); serve folders with different names"
            )
        if is_hf_export(path) or load_config(RunDir(path).config).lora.method == "full":
            loaded = load_run(path, trust_remote_code=trust_remote_code, allow_base_change=allow_base_change)
            served[name] = served_entry(
                name, loaded.model, None, loaded.encoder, loaded.config.data.system_prompt, str(path)
            )
            continue
        # peft adapter names become module names: no dots, so not the folder name.
        served[name] = add_adapter(
            path, name, f"adapter_{len(served)}", bases, trust_remote_code, allow_base_change
        )
    for base in bases.values():
        while base.name in served:
            base.name = f"{base.name}-base"
        for adapter in served.values():
            if adapter.model is base.model:
                adapter.base_name = base.name
        served[base.name] = base
    return served


def add_adapter(
    path: Path,
    name: str,
    adapter: str,
    bases: dict[str, Served],
    trust_remote_code: bool,
    allow_base_change: bool = False,
) -> Served:
    run = RunDir(path)
    check_finished(run)
    config = load_config(run.config)
    check_consent(config, run.config, trust_remote_code)
    base_model = run_base(run, config.model, allow_base_change)
    check_adapter_weights(run.adapter, config.model.allow_pickle)
    # Keyed by where the base was found: runs that name one folder differently share it.
    key = json.dumps([base_model.model_dump(), config.quant.model_dump()], sort_keys=True)
    encoder = ChatEncoder(AutoTokenizer.from_pretrained(run.adapter))
    system = config.data.system_prompt
    with loading(run.adapter, adapter_hint(config)):
        if key not in bases:
            base, _ = load_base_model(base_model, config.quant)
            if config.quant.mode == "none":  # quantized weights were placed on the device as they loaded
                base.to(process_device())
            shared = PeftModel.from_pretrained(base, run.adapter, adapter_name=adapter)
            base_name = Path(config.model.gguf_file or config.model.name_or_path).stem or "base"
            bases[key] = served_entry(base_name, shared, None, encoder, system, config.model.name_or_path)
        else:
            bases[key].model.load_adapter(run.adapter, adapter_name=adapter)
        check_adapter_covers(bases[key].model, run.adapter, config.model.name_or_path, adapter_name=adapter)
    bases[key].model.eval()
    return served_entry(name, bases[key].model, adapter, encoder, system, str(path))


def served_entry(
    name: str, model, adapter: str | None, encoder: ChatEncoder, system_prompt: str | None, source: str = ""
) -> Served:
    # Chat models often end a turn with a token other than the tokenizer's EOS, named in generation_config.
    eos = model.generation_config.eos_token_id
    extra = eos if isinstance(eos, list) else [eos]
    stops = [encoder.tokenizer.eos_token_id, *(i for i in extra if i is not None)]
    return Served(
        name=name,
        model=model,
        adapter=adapter,
        encoder=encoder,
        system_prompt=system_prompt,
        stop_ids=list(dict.fromkeys(stops)),
        context=context_length(model.config),
        source=source,
    )
