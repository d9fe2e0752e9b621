"""Infer stage: use a finished run.

Owns loading a run (base model plus adapter, on this process's device), turning input rows into
conversations with the run's own data mapping (`inputs`), and batched generation (`generate`). Prompts are
built by the data stage's encoder, the same code that built the training samples.
"""
