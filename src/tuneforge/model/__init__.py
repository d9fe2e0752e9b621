"""Model stage: sections `model`, `quant` and `lora` in, a trainable model and its tokenizer out.

Owns loading a hub id or local folder (optionally 4/8-bit with bitsandbytes), the device a process uses,
the one LoRA-target resolver (peft's own matching, run on a meta-device copy of the architecture), wrapping
the model with a peft adapter, saving it, and the memory/throughput planner. It never reads data.
"""
