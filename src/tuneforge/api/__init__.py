"""The Python API for notebooks and scripts: the CLI's stages called directly, returning objects instead of
printing only. No second implementation: each call is the stage function its CLI command calls.

    import tuneforge
    run = tuneforge.train("examples/quickstart.yaml", train={"max_steps": 50}, overwrite=True)
    run.metrics                     # pandas DataFrame of metrics.jsonl
    run.plot()                      # the loss curve (shown by Jupyter)
    run.generate("delete notes.txt")
    run.evaluate(compare_base=True).figures
    run.export("exports/quickstart").passed
    tuneforge.load("runs/quickstart")
    tuneforge.preview("examples/quickstart.yaml").preflight

Errors are the CLI's `TuneforgeError`s with the same messages (never SystemExit); Ctrl-C, or a kernel
interrupt, during `train` stops as in the CLI: one sealed checkpoint, and the Run says `interrupted`.
"""

from tuneforge.api.config import as_config
from tuneforge.api.run import DataPreview, Evaluation, Run, load, preview, train

__all__ = ["DataPreview", "Evaluation", "Run", "as_config", "load", "preview", "train"]
