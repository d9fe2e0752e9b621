"""The installed tuneforge's version (stages import it from here, not from the package root, which also
opens the Python API)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tuneforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
