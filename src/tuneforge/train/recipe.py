"""What a training method is: the `Recipe` interface that every `train.method` implements.

The run driver (`train/run.py`) owns everything methods share: the run directory, lock, manifest, resume,
signals, processes, the final evaluation and the reports. A recipe brings the rest, in the order the
driver calls it. Recipes are registered by name in `train/methods.py`; nothing outside a recipe and that
registry asks which method a run uses.

    recipe = recipe_for(config.train.method)       # tuneforge.train.methods
    bundle, data = recipe.prepare(config, console)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback

    from tuneforge.config.schema import RunConfig
    from tuneforge.data.prepared import PreparedData
    from tuneforge.model.build import ModelBundle
    from tuneforge.model.plan import Rollouts
    from tuneforge.run.directory import RunDir


class Recipe(ABC):
    """One training method. Subclasses set the class attributes and implement the abstract methods; the
    others have the defaults most methods want."""

    name: str
    """The `train.method` value that selects this recipe."""
    section: str | None = None
    """The run config section holding this method's own settings (e.g. `preference`), or None."""
    sequences_per_row: int = 1
    """Sequences one data row costs in a forward pass: `tuneforge plan` multiplies the batch by it."""

    def steps_per_checkpoint(self, config: RunConfig) -> int:
        """Optimizer steps that belong together (GRPO's passes over one batch of rollouts): checkpoints,
        a graceful stop included, fall on multiples of it, so a resume starts where a group starts."""
        return 1

    def rollouts(self, config: RunConfig) -> Rollouts | None:
        """What the method generates before each optimizer step (online methods), for `tuneforge plan`."""
        return None

    def rows_per_device(self, config: RunConfig) -> int:
        """Data rows one process takes per forward pass (the global batch is counted in them)."""
        return config.train.batch_size

    def refuse(self, config: RunConfig) -> list[str]:
        """Why the config's options cannot work with this method (one sentence each, naming the keys);
        empty when they can. Checked before any model or data is loaded."""
        return []

    @abstractmethod
    def prepare_data(
        self,
        config: RunConfig,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int | None,
        context_length: int | None,
    ) -> PreparedData:
        """The data stage's track for this method's samples: rows in, encoded and checked sets out. Needs a
        tokenizer, never a model (`tuneforge data` and `plan` call it without weights)."""

    @abstractmethod
    def prepare(self, config: RunConfig, console: Console) -> tuple[ModelBundle, PreparedData]:
        """Model and checked data, printed for the user; nothing is written to the run directory yet.
        Raises on anything a user must fix."""

    @abstractmethod
    def assemble(
        self,
        config: RunConfig,
        bundle: ModelBundle,
        data: PreparedData,
        run: RunDir,
        callbacks: list[TrainerCallback],
        console: Console,
        resuming: bool,
    ) -> Trainer:
        """The transformers Trainer that trains this method, with the driver's callbacks added."""

    @abstractmethod
    def data_report(self, config: RunConfig, data: PreparedData, hf_config: Any) -> dict:
        """`tuneforge data --json`: what training will see, as plain JSON-ready values. Must hold a
        `preflight` list of {check, passed, severity, finding}."""

    @abstractmethod
    def show_data(
        self, console: Console, data: PreparedData, tokenizer: PreTrainedTokenizerBase, report: dict, n: int
    ) -> None:
        """`tuneforge data`: n rendered samples, lengths and the preflight results, for people."""

    def before_start(
        self, config: RunConfig, run: RunDir, bundle: ModelBundle, data: PreparedData, resuming: bool
    ) -> None:
        """Work on the starting model before the Trainer exists and before the run directory changes
        (e.g. scoring a reference). May still raise and leave the run as it was."""
        return None  # most methods have nothing to add here

    def manifest_fields(self, config: RunConfig, data: PreparedData) -> dict:
        """What manifest.json records about this method at the start of a run."""
        return {}

    def write_start(self, run: RunDir, data: PreparedData) -> None:
        """Files this method adds to a new run directory (rank 0, after the manifest)."""
        return None  # most methods have nothing to add here

    def plots(self, run: RunDir, title: str) -> None:
        """Plots beside the loss curve, from metrics.jsonl, at the end of a finished run."""
        return None  # most methods have nothing to add here
