"""Infer stage: use a finished run, through one engine interface.

Owns the one set of generation settings (`decoding.Decoding`), loading runs and exports, alone or several
on one shared base (`load`), the engine interface every caller goes through and its registry keyed by
`serve.backend` (`engine`), the backends themselves (`engines.transformers` first), the request
bookkeeping they share for streaming (`requests`), sampling with a generator per row so that a seeded
row's answer does not depend on its batch (`row_sampling`, for GRPO's rollouts), turning input rows into conversations with the run's
own data mapping (`inputs`), and `tuneforge generate` (`generate`). Prompts are built by the data stage's
encoder, the same code that built the training samples. Everything that generates (generate, eval,
metrics during training, the export check, chat, the app, the server) does it here.
"""
