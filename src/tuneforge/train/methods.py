"""The method registry: each `train.method` and the recipe that trains it. The one place that maps a
method's name to its code; everything else asks a recipe (`train/recipe.py`).

Adding a method: one module with a `Recipe` subclass (see `sft.py`, `preference.py`), one line here.

    recipe = recipe_for(config.train.method)
    check_method(config)   # the recipe's refusals, as a config error
"""

from __future__ import annotations

import difflib

from tuneforge.config.schema import RunConfig
from tuneforge.errors import TuneforgeError
from tuneforge.train.grpo import GRPO
from tuneforge.train.preference import DPO, KTO_RECIPE, ORPO, SIMPO
from tuneforge.train.recipe import Recipe
from tuneforge.train.sft import SFT

METHODS: dict[str, Recipe] = {
    "sft": SFT,
    "dpo": DPO,
    "simpo": SIMPO,
    "orpo": ORPO,
    "kto": KTO_RECIPE,
    "grpo": GRPO,
}


def recipe_for(method: str) -> Recipe:
    if method not in METHODS:
        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TuneforgeError(
            f"train.method {method!r} is not a training method{hint}; choose one of {', '.join(METHODS)}"
        )
    return METHODS[method]


def check_method(config: RunConfig) -> None:
    """The run's options against its method: a config error naming every key that cannot work with it."""
    reasons = recipe_for(config.train.method).refuse(config)
    if reasons:
        raise TuneforgeError("config: " + "; ".join(reasons))


def unread_sections(config: RunConfig) -> list[str]:
    """Other methods' config sections that this config sets away from their defaults: the run's method
    does not read them, which is worth a note (a forgotten train.method, usually)."""
    own = recipe_for(config.train.method).section
    others = {recipe.section for recipe in METHODS.values() if recipe.section not in (None, own)}
    return sorted(name for name in others if getattr(config, name).model_fields_set)
