"""Config stage: the run configuration and nothing else.

Owns the pydantic schema (one model per pipeline stage, strict keys, documented fields; data sources and
their columns in `columns`), reading YAML with
`--set section.key=value` overrides and readable errors, and the generated config reference (docs/reference/config.md).
Every other stage receives its own section of a validated `RunConfig`. The CLI and the training recipes
see the whole of it; a finished run's saved config is read whole by infer's run loader, and eval, export
and serve take their sections from what it loaded. A method's own rules (what options it refuses) belong
to its recipe (`tuneforge.train.methods`), not to this schema.
"""
