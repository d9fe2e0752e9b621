"""The independent reader of an export check. `tuneforge export` runs this file as a script in a fresh
Python process; it imports torch, safetensors and transformers only, never tuneforge, so the check sees the
export exactly as a user's own code loads it (an `hf` folder, or a GGUF file through transformers' GGUF
loader).

    python reader.py REQUEST.json RESULT.safetensors

REQUEST: {"folder", "gguf_file" (or null), "inputs": [[ids]], "prompts": [[ids]], "conversations":
[[messages]], "max_new_tokens", "eos_token_id", "pad_token_id"}. RESULT: logits.I (every position of
inputs[I]), generated.I (greedy new tokens after prompts[I]) and template.I (the ids the export's own
tokenizer builds for conversations[I] with apply_chat_template, as any user's code would; left out when
the export has no chat template).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


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
    results.update(template_prompts(request, where))
    imported = sorted(name for name in sys.modules if name.split(".")[0] == "tuneforge")
    save_file(results, result_path, metadata={"tuneforge_modules": json.dumps(imported)})


def template_prompts(request: dict, where: dict) -> dict:
    try:  # a GGUF file whose tokenizer transformers cannot rebuild leaves the template unchecked, not failed
        tokenizer = AutoTokenizer.from_pretrained(request["folder"], **where)
    except (OSError, ValueError, KeyError) as exc:
        print(f"the export's tokenizer could not be loaded: {exc}", file=sys.stderr)
        return {}
    if not tokenizer.chat_template:
        return {}
    results = {}
    tools = request.get("tools") or [None] * len(request.get("conversations", []))
    for i, (messages, offered) in enumerate(zip(request.get("conversations", []), tools)):
        # the tools a row offers are part of its prompt, as any user's code passes them
        out = tokenizer.apply_chat_template(
            messages, tools=offered, add_generation_prompt=True, tokenize=True
        )
        ids = out["input_ids"] if hasattr(out, "keys") else out
        results[f"template.{i}"] = torch.tensor(ids, dtype=torch.long)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:3])
