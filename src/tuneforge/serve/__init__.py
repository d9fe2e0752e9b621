"""Serve stage: a trained model in front of people and programs. Owns the terminal chat (`chat`), the
Gradio app (`webapp`), the OpenAI-compatible HTTP server (`routes`, with its wire format in `protocol`)
and opening the engine they share (`server`). Loading models, decoding and generation are
`tuneforge.infer`'s: every answer here comes from an `infer.engine.Engine`.
"""
