"""Every export is checked against the model that was evaluated, before it is published.

Up to 20 held-out rows (the run's eval split, or `--data FILE`) are run through the adapter-on-base model
in this process and through the exported files in a fresh process that imports only transformers
(`reader.py`): next-token logits at every position of each conversation, and greedy generations from each
prompt. `export_check.json` holds the figures; a figure outside its format's tolerance is an error unless
`--allow-mismatch`.

Tolerances (against the adapter on the base the merge used), by the coarser of the exported weights and
the reference's dtype (a bf16 run exported as float32 is held to the 16-bit row). Each format's `precision`
(tuneforge.export.formats) puts the weights types it writes in a row:

    float32 (hf), f32 (gguf)      max |logit diff| <= 1e-3 and top-1 agreement >= 99%
    bfloat16/float16, f16/bf16    top-1 agreement >= 95%
    q8_0                          top-1 agreement >= 90%
    4- to 6-bit GGUF types        top-1 agreement >= 80%

For a base trained in 4 or 8 bits the figures against the adapter on that quantized base (the model
`tuneforge eval` scored) are reported too, ungated: they measure the base's quantization error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from tuneforge.data.agent import tools_of
from tuneforge.data.encode import ChatEncoder
from tuneforge.errors import TuneforgeError
from tuneforge.eval.heldout import heldout_rows
from tuneforge.export.formats import FORMATS
from tuneforge.infer.decoding import Decoding
from tuneforge.infer.engine import engine_for
from tuneforge.infer.load import LoadedRun
from tuneforge.run.directory import RunDir

READER = Path(__file__).with_name("reader.py")
MAX_ROWS = 20
MAX_POSITIONS = 128  # per conversation: enough to cover prompt and answer, bounded for big vocabularies
NEW_TOKENS = 24


@dataclass(frozen=True)
class Tolerance:
    min_top1: float
    max_abs_diff: float | None = None  # None: not bounded (16-bit and quantized weights round every logit)


# Coarser weights round every logit more; the check is held to the coarser of the reference and the export.
# The reference's torch dtype names are ranked too: the hf format's weights are those same names.
PRECISION_RANK = {weights: rank for fmt in FORMATS.values() for weights, rank in fmt.precision.items()}
TOLERANCES = (
    Tolerance(min_top1=0.99, max_abs_diff=1e-3),
    Tolerance(min_top1=0.95),
    Tolerance(min_top1=0.90),
    Tolerance(min_top1=0.80),  # 4- to 6-bit GGUF types
)


def tolerance(export_weights: str, reference_dtype: str) -> Tolerance:
    """`export_weights`: the format's `weights` (a dtype or GGUF type); `reference_dtype`: the adapter-on-base
    model's."""
    rank = max(PRECISION_RANK.get(export_weights, 3), PRECISION_RANK.get(reference_dtype, 3))
    return TOLERANCES[rank]


@dataclass
class Probes:
    inputs: list[list[int]]  # whole conversations (prompt and answer): logits compared at every position
    prompts: list[list[int]]  # generation prompts: greedy continuations compared
    # the prompts' messages: the export's own tokenizer renders them with its saved template
    conversations: list[list[dict]] = field(default_factory=list)


@dataclass
class Outputs:
    logits: list[torch.Tensor]
    generated: list[list[int]]
    # prompt ids from the conversations: training's encoder (reference) or the export's
    # apply_chat_template; None where the export carries no template its reader could render
    template_prompts: list[list[int]] | None = None


def probes(encoder: ChatEncoder, run: RunDir, loaded: LoadedRun, data_file: Path | None) -> Probes:
    rows = heldout_rows(run, loaded.config.data, loaded.data_format, data_file)[:MAX_ROWS]
    inputs = [encoder.encode_conversation(r.conversation()).input_ids[:MAX_POSITIONS] for r in rows]
    prompts = [encoder.prompt_ids(r.messages)[:MAX_POSITIONS] for r in rows]
    return Probes(inputs, prompts, [r.messages for r in rows])


@torch.inference_mode()
def run_reference(loaded: LoadedRun, probe: Probes) -> Outputs:
    model = loaded.model
    device = next(model.parameters()).device
    logits = [model(torch.tensor([ids], device=device)).logits[0].float().cpu() for ids in probe.inputs]
    generated = engine_for(loaded).generate(
        probe.prompts, decoding=Decoding(max_new_tokens=NEW_TOKENS), batch_size=1
    )
    return Outputs(logits, generated, [loaded.encoder.prompt_ids(m) for m in probe.conversations])


def run_reader(folder: Path, gguf_file: str | None, probe: Probes, tokenizer) -> Outputs:
    """The exported files, read in a fresh process by plain transformers."""
    with tempfile.TemporaryDirectory(prefix="tuneforge-check-") as scratch:
        request = Path(scratch) / "request.json"
        result = Path(scratch) / "result.safetensors"
        request.write_text(
            json.dumps(
                {
                    "folder": str(folder),
                    "gguf_file": gguf_file,
                    "inputs": probe.inputs,
                    "prompts": probe.prompts,
                    "conversations": [list(c) for c in probe.conversations],
                    "tools": [tools_of(c) for c in probe.conversations],
                    "max_new_tokens": NEW_TOKENS,
                    "eos_token_id": tokenizer.eos_token_id,
                    "pad_token_id": tokenizer.pad_token_id,
                }
            )
        )
        done = subprocess.run(
            [sys.executable, str(READER), str(request), str(result)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise TuneforgeError(
                f"the exported model could not be read back by transformers, so nothing was published. "
                f"Its reader said:\n{done.stderr[-2000:]}"
            )
        with safe_open(str(result), "pt") as f:
            if json.loads(f.metadata()["tuneforge_modules"]):
                raise TuneforgeError("the export check's reader imported tuneforge; it must stay independent")
            logits = [f.get_tensor(f"logits.{i}") for i in range(len(probe.inputs))]
            generated = [f.get_tensor(f"generated.{i}").tolist() for i in range(len(probe.prompts))]
            rendered, names = [f"template.{i}" for i in range(len(probe.conversations))], set(f.keys())
            template = [f.get_tensor(n).tolist() for n in rendered] if names.issuperset(rendered) else None
    return Outputs(logits, generated, template)


def compare(reference: Outputs, exported: Outputs) -> dict:
    diffs, agree, positions = 0.0, 0, 0
    for ref, out in zip(reference.logits, exported.logits):
        if ref.shape != out.shape:
            raise TuneforgeError(
                f"the export's logits have shape {tuple(out.shape)}, expected {tuple(ref.shape)}: the converter "
                "changed the vocabulary or the model. Report it with the run's config; nothing was published"
            )
        diffs = max(diffs, (ref - out).abs().max().item())
        agree += (ref.argmax(-1) == out.argmax(-1)).sum().item()
        positions += ref.shape[0]
    same = sum(a == b for a, b in zip(reference.generated, exported.generated))
    return {
        "max_abs_logit_diff": diffs,
        "top1_agreement": agree / positions if positions else 1.0,
        "positions": positions,
        "generations_equal": same,
        "generations": len(reference.generated),
        **template_figures(reference, exported),
    }


def template_figures(reference: Outputs, exported: Outputs) -> dict:
    """How many prompts the export's own apply_chat_template builds exactly as training does."""
    if exported.template_prompts is None:
        return {"template_prompts_equal": None}
    pairs = zip(reference.template_prompts or [], exported.template_prompts)
    return {
        "template_prompts_equal": sum(a == b for a, b in pairs),
        "template_prompts": len(exported.template_prompts),
    }


def within(figures: dict, limit: Tolerance) -> bool:
    """Inside the format's tolerance, and every prompt the export's template builds is training's."""
    equal = figures.get("template_prompts_equal")
    if equal is not None and equal != figures.get("template_prompts"):
        return False
    if figures["top1_agreement"] < limit.min_top1:
        return False
    return limit.max_abs_diff is None or figures["max_abs_logit_diff"] <= limit.max_abs_diff


@dataclass
class CheckResult:
    format: str
    weights: str
    reference_dtype: str
    reader: str
    rows: int
    tolerance: dict
    against_adapter_on_base: dict
    against_adapter_on_quantized_base: dict | None
    passed: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def summary(result: CheckResult) -> str:
    figures = result.against_adapter_on_base
    text = (
        f"top-1 agreement {figures['top1_agreement']:.2%} over {figures['positions']} positions, max |logit diff| "
        f"{figures['max_abs_logit_diff']:.2e}, greedy generations equal {figures['generations_equal']}/"
        f"{figures['generations']}"
    )
    if figures.get("template_prompts_equal") is not None:
        text += (
            f", prompts from the export's own chat template equal {figures['template_prompts_equal']}/"
            f"{figures['template_prompts']}"
        )
    quantized = result.against_adapter_on_quantized_base
    if quantized:
        text += (
            f"; against the adapter on the quantized training base: top-1 {quantized['top1_agreement']:.2%}, "
            f"max |logit diff| {quantized['max_abs_logit_diff']:.2e}"
        )
    return text
