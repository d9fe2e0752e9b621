"""Bad inputs for the table in test_bad_inputs.py: serving (issue 21). Same shape as bad_input_cases.CASES:
name -> (builder(World) -> CLI arguments, texts the message must hold)."""

from __future__ import annotations

from bad_input_cases import World  # noqa: F401 - the builders take a World

CASES: dict = {}
