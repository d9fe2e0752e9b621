"""Command line: `tuneforge train | data | plan | generate | eval | runs | compare | export | chat | app |
serve | studio`, and `tuneforge --version`.

The CLI is where the stages meet: it loads the whole run config and hands each stage its part. Each
command parses its options and calls one stage function; the commands live in one module per area
(`train`, `infer`, `results`, `ship`, `use`), registered on the one typer `app` (`cli/app.py`).

tuneforge train examples/quickstart.yaml --set train.max_steps=50
tuneforge data examples/quickstart.yaml --n 3
tuneforge plan examples/mistral7b_qlora_chatdoctor.yaml --gpu A10G
tuneforge generate runs/quickstart --prompt "delete notes.txt"
tuneforge generate runs/quickstart --input eval.jsonl --output predictions.jsonl
"""

from tuneforge.cli import infer, results, ship, train, use  # noqa: F401 - importing registers the commands
from tuneforge.cli.app import app

__all__ = ["app"]
