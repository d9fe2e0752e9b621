"""Config stage: the run configuration and nothing else.

Owns the pydantic schema (one model per pipeline stage, strict keys, documented fields), reading YAML with
`--set section.key=value` overrides and readable errors, and the generated config reference in the README.
Every other stage receives its own section of a validated `RunConfig`; only the CLI and the recipes
(`train`, `infer`) see the whole of it.
"""
