"""Serve stage (to come, issue "Use the model"): terminal chat, a Gradio app and an OpenAI-compatible
server, all prompting through `tuneforge.infer` and the data stage's encoder. Empty until that issue lands.
"""
