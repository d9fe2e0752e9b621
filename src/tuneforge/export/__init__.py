"""Export stage (to come, issue "Ship the result"): merged safetensors, GGUF and Ollama exports, each
checked against the adapter-on-base model that was evaluated, plus the model card. Empty until that
issue lands.
"""
