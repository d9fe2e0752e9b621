"""Serve stage: a trained model in front of people and programs. Owns the terminal chat (`chat`), the
Gradio app (`webapp`), the OpenAI-compatible HTTP server (`routes`, with its wire format in `protocol` and
the replies it builds from engine events in `replies`: reasoning traces and tool calls taken apart, whole
or streamed) opening the engine they share (`server`), and who may reach them (`access`: a non-local host needs a
key or a login, a port in use is said before a model loads). Loading models, decoding and generation are
`tuneforge.infer`'s: every answer here comes from an `infer.engine.Engine`.
"""
