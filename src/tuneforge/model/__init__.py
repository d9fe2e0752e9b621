"""Model stage: sections `model`, `quant` and `lora` in, a trainable model and its tokenizer out.

Owns loading a hub id or local folder (optionally 4/8-bit with bitsandbytes), the device a process uses,
the one LoRA-target resolver (peft's own matching, run on a meta-device copy of the architecture), wrapping
the model with a peft adapter, saving it, the memory/throughput planner, the pickle rule (safetensors
only unless model.allow_pickle) and the base's pin (its fingerprint, and finding a run's base again).
It never reads data.
"""
