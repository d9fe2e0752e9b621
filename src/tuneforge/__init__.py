"""tuneforge: fine-tune causal language models with LoRA and QLoRA, end to end.

tuneforge train examples/quickstart.yaml
tuneforge generate runs/quickstart --prompt "list the files in /tmp"
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tuneforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
