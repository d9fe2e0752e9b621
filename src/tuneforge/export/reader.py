"""The independent reader of an export check. `tuneforge export` runs this file as a script in a fresh
Python process; it imports torch, safetensors and transformers only, never tuneforge, so the check sees the
export exactly as a user's own code loads it (an `hf` folder, or a GGUF file through transformers' GGUF
loader).

    python reader.py REQUEST.json RESULT.safetensors

REQUEST: {"folder", "gguf_file" (or null), "inputs": [[ids]], "prompts": [[ids]], "max_new_tokens",
"eos_token_id", "pad_token_id"}. RESULT: logits.I (every position of inputs[I]) and generated.I (greedy
new tokens after prompts[I]).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main(request_path: str, result_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = {"gguf_file": request["gguf_file"]} if request.get("gguf_file") else {}
    model = AutoModelForCausalLM.from_pretrained(request["folder"], dtype="auto", **where).to(device).eval()
    results = {}
    with torch.inference_mode():
        for i, ids in enumerate(request["inputs"]):
            results[f"logits.{i}"] = model(torch.tensor([ids], device=device)).logits[0].float().cpu()
        for i, ids in enumerate(request["prompts"]):
            prompt = torch.tensor([ids], device=device)
            out = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=request["max_new_tokens"],
                do_sample=False,
                eos_token_id=request["eos_token_id"],
                pad_token_id=request["pad_token_id"],
            )
            results[f"generated.{i}"] = out[0, len(ids) :].cpu()
    imported = sorted(name for name in sys.modules if name.split(".")[0] == "tuneforge")
    save_file(results, result_path, metadata={"tuneforge_modules": json.dumps(imported)})


if __name__ == "__main__":
    main(*sys.argv[1:3])
