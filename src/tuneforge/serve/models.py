"""What a server, the app and the terminal chat load: runs and exports, each under a name.

Runs that share a base model (same model and quant sections) share one copy of it: the first run's
adapter is loaded with peft, every other run's is added beside it (peft multi-adapter), and the base
itself is served under its own name with the adapters switched off. An `hf` export and a full fine-tune
are whole models and are loaded on their own.

    served = load_models([Path("runs/a"), Path("runs/b")])   # names: a, b, and the base's
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from peft import PeftModel
from safetensors import SafetensorError
from transformers import AutoTokenizer

from tuneforge.config.loading import load_config
from tuneforge.config.schema import RunConfig
from tuneforge.data.encode import ChatEncoder
from tuneforge.errors import TuneforgeError
from tuneforge.infer.load import check_adapter_covers, check_finished, is_hf_export, load_run
from tuneforge.model.load import context_length
from tuneforge.run.directory import RunDir


@dataclass
class Served:
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


def load_models(paths: list[Path], trust_remote_code: bool = False) -> dict[str, Served]:
    served: dict[str, Served] = {}
    bases: dict[str, Served] = {}  # base key -> the base's own entry, holding the shared PeftModel
    for path in paths:
        name = path.resolve().name
        if name in served:
            raise TuneforgeError(
                f"two models are named {name!r} ({path}); serve folders with different names"
            )
        if is_hf_export(path) or load_config(RunDir(path).config).lora.method == "full":
            loaded = load_run(path, trust_remote_code=trust_remote_code)
            served[name] = entry(name, loaded.model, None, loaded.encoder, loaded.config, str(path))
            continue
        # peft adapter names become module names: no dots, so not the folder name.
        served[name] = add_adapter(path, name, f"adapter_{len(served)}", bases, trust_remote_code)
    for base in bases.values():
        while base.name in served:
            base.name = f"{base.name}-base"
        for adapter in served.values():
            if adapter.model is base.model:
                adapter.base_name = base.name
        served[base.name] = base
    return served


def add_adapter(
    path: Path, name: str, adapter: str, bases: dict[str, Served], trust_remote_code: bool
) -> Served:
    run = RunDir(path)
    check_finished(run)
    config = load_config(run.config)
    key = json.dumps([config.model.model_dump(), config.quant.model_dump()], sort_keys=True)
    encoder = ChatEncoder(AutoTokenizer.from_pretrained(run.adapter))
    try:
        if key not in bases:
            base = load_run(path, base_only=True, trust_remote_code=trust_remote_code).model
            shared = PeftModel.from_pretrained(base, run.adapter, adapter_name=adapter)
            base_name = Path(config.model.gguf_file or config.model.name_or_path).stem or "base"
            bases[key] = entry(base_name, shared, None, encoder, config, config.model.name_or_path)
        else:
            bases[key].model.load_adapter(run.adapter, adapter_name=adapter)
        check_adapter_covers(bases[key].model, run.adapter, config.model.name_or_path, adapter_name=adapter)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise TuneforgeError(
            f"{run.adapter} cannot be loaded ({type(exc).__name__}: {exc}); is it complete, and saved for "
            f"this base model ({config.model.name_or_path})?"
        ) from exc
    bases[key].model.eval()
    return entry(name, bases[key].model, adapter, encoder, config, str(path))


def entry(
    name: str, model, adapter: str | None, encoder: ChatEncoder, config: RunConfig, source: str
) -> Served:
    eos = model.generation_config.eos_token_id
    extra = eos if isinstance(eos, list) else [eos]
    stops = [encoder.tokenizer.eos_token_id, *(i for i in extra if i is not None)]
    return Served(
        name=name,
        model=model,
        adapter=adapter,
        encoder=encoder,
        system_prompt=config.data.system_prompt,
        stop_ids=list(dict.fromkeys(stops)),
        context=context_length(model.config),
        source=source,
    )
