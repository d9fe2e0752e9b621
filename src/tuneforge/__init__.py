"""tuneforge: fine-tune causal language models with LoRA and QLoRA, end to end.

tuneforge train examples/quickstart.yaml
tuneforge generate runs/quickstart --prompt "list the files in /tmp"

In Python (tuneforge.api, imported on first use so that `import tuneforge` stays light):

    import tuneforge
    run = tuneforge.train("examples/quickstart.yaml", train={"max_steps": 50})
"""

import sys
import types

from tuneforge.version import __version__

API = ("train", "load", "preview", "Run", "DataPreview", "Evaluation")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        import tuneforge.api

        return getattr(tuneforge.api, name)
    raise AttributeError(f"module 'tuneforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *API]


class _Package(types.ModuleType):
    """`tuneforge.train(...)` is the API's function although the training stage is the subpackage
    `tuneforge.train`: a class property wins over the attribute the import system sets when the
    subpackage loads (that setattr is dropped). The stage stays importable with `from tuneforge.train.run
    import ...` and `from tuneforge.train import run`; `import tuneforge.train.run as run` and string
    targets such as monkeypatch.setattr("tuneforge.train.run.NAME", ...) reach the function instead and fail."""

    @property
    def train(self):
        from tuneforge.api import train

        return train

    @train.setter
    def train(self, subpackage) -> None:
        pass


sys.modules[__name__].__class__ = _Package
