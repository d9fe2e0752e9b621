"""python -m tuneforge.cli: the same commands as the `tuneforge` script."""

from tuneforge.cli import app

app()
