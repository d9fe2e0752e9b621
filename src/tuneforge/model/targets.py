"""The one LoRA-target resolver: which layers `lora.target_modules` adapts, decided by peft itself.

peft injects the adapter into a meta-device copy of the architecture (no weights, a fraction of a second
even for 70B), so the answer is peft's own matching (suffix rules, all-linear's exclusion of the output
head, GPT-2's Conv1D) rather than a re-implementation. The model builder, `tuneforge plan` and
`tuneforge data` all call `resolve_targets`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from peft import LoraConfig as PeftLoraConfig
from peft import inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from tuneforge.config.schema import LoraConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import meta_model


def peft_lora_config(lora: LoraConfig) -> PeftLoraConfig:
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save or None,
        use_dora=lora.dora,
        use_rslora=lora.rslora,
        task_type="CAUSAL_LM",
    )


@dataclass(frozen=True)
class Targets:
    layers: dict[str, tuple[int, int]]  # full name -> (in_features, out_features) of every adapted layer
    per_name: dict[str, int]  # each requested name (or, for all-linear, each leaf name) -> layers adapted


def linear_leaf_names(model: nn.Module) -> list[str]:
    return sorted(
        {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
    )


def resolve_targets(hf_config, lora: LoraConfig, trust_remote_code: bool = False) -> Targets:
    """The layers the adapter would wrap; a requested name that matches none is an error that lists the
    model's linear layers."""
    model = meta_model(hf_config, trust_remote_code)
    linear_names = linear_leaf_names(model)
    if lora.target_modules != "all-linear":
        check_requested(model, lora.target_modules, linear_names)
    # Matching depends only on the names: DoRA and modules_to_save would only add work on the meta copy.
    matching_only = lora.model_copy(update={"dora": False, "modules_to_save": []})
    inject_adapter_in_model(peft_lora_config(matching_only), model, low_cpu_mem_usage=True)
    layers = {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }
    if lora.target_modules == "all-linear":
        return Targets(layers, dict(sorted(Counter(n.rsplit(".", 1)[-1] for n in layers).items())))
    return Targets(
        layers, {name: sum(matches(full, name) for full in layers) for name in lora.target_modules}
    )


def check_requested(model: nn.Module, targets: list[str], linear_names: list[str]) -> None:
    """Each name must match a linear layer (peft would stop at a whole block, and skip names that match
    nothing as long as another one matches)."""
    unmatched = []
    for target in targets:
        found = [m for full, m in model.named_modules() if matches(full, target)]
        blocks = [type(m).__name__ for m in found if not isinstance(m, (nn.Linear, Conv1D, nn.Embedding))]
        if blocks:
            raise TuneforgeError(
                f"lora.target_modules: {target!r} names a {blocks[0]} block, not a linear layer. "
                f"Its linear layers are: {', '.join(linear_names)}. Or use target_modules: all-linear."
            )
        if not found:
            unmatched.append(target)
    if unmatched:
        raise unmatched_error(unmatched, linear_names)


def matches(full_name: str, target: str) -> bool:
    """peft's rule for a plain name: the whole module name, or its ending after a dot."""
    return full_name == target or full_name.endswith(f".{target}")


def unmatched_error(names: list[str], linear_names: list[str]) -> TuneforgeError:
    listed = ", ".join(repr(n) for n in names)
    return TuneforgeError(
        f"lora.target_modules: {listed} matches no linear layer of this model. "
        f"Its linear layers are: {', '.join(linear_names)}. Or use target_modules: all-linear."
    )


def check_modules_to_save(model: nn.Module, names: list[str]) -> None:
    leaves = {full_name.rsplit(".", 1)[-1] for full_name, _ in model.named_modules() if full_name}
    unknown = [name for name in names if name not in leaves]
    if unknown:
        top_level = [name for name, _ in model.named_modules() if name.count(".") <= 2 and name]
        raise TuneforgeError(
            f"lora.modules_to_save: {', '.join(repr(n) for n in unknown)} is not a module of this model. "
            f"Embedding and head names here: {', '.join(sorted({n.rsplit('.', 1)[-1] for n in top_level}))}"
        )
