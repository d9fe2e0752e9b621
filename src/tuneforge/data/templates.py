"""Prompt templates as Jinja chat templates, so training and inference render through one code path.

A tokenizer that has a chat template keeps it (template: auto). A base model without one gets a
named built-in, installed as `tokenizer.chat_template`; it is saved with the adapter, so whatever
loads the adapter renders prompts exactly as training did. Built-ins end each assistant turn with
the EOS token so the model learns to stop, and no generation prompt ends in a space (see encode.py's
boundary rule). For a tokenizer that puts BOS before plain text, a built-in (or a template file) that does
not write BOS gets it written first: whatever
renders the saved template the standard way (transformers' `apply_chat_template`, a GGUF or Ollama
runtime), which adds no special tokens of its own, then sends the ids training used.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from transformers import PreTrainedTokenizerBase

from tuneforge.errors import TuneforgeError

BUILTIN_TEMPLATES: dict[str, str] = {
    # For prompts that are already fully written (pre-rendered data): nothing added but the closing EOS.
    "raw": (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] + eos_token }}"
        "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
    ),
    "alpaca": (
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
        "{% elif m['role'] == 'user' %}{{ '### Instruction:\n' + m['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + m['content'] + eos_token + '\n\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
    # The one built-in with a tool format (Hermes / Qwen2.5 style): the tools' JSON schemas in the system
    # turn, each call as <tool_call>{"name": ..., "arguments": {...}}</tool_call> after the answer's text,
    # results as tool turns in <tool_response>, a reasoning trace as <think>...</think> before the text.
    # Without tools, calls or traces it renders exactly as before.
    "chatml": (
        "{% set ns = namespace(first=0) %}"
        "{% if tools %}{{ '<|im_start|>system\n' }}"
        "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}"
        "{% set ns.first = 1 %}{% endif %}"
        "{{ '# Tools\n\nYou may call one or more functions. Their signatures are within <tools></tools>:\n<tools>' }}"
        "{% for t in tools %}{{ '\n' + (t | tojson) }}{% endfor %}"
        "{{ '\n</tools>\n\nFor each call, return a JSON object with the function name and arguments within "
        "<tool_call></tool_call> tags.<|im_end|>\n' }}{% endif %}"
        "{% for m in messages[ns.first:] %}{{ '<|im_start|>' + m['role'] + '\n' }}"
        "{% if m['role'] == 'assistant' %}"
        "{% if m.get('reasoning_content') %}{{ '<think>\n' + m['reasoning_content'] + '\n</think>\n\n' }}{% endif %}"
        "{{ m['content'] }}"
        "{% for c in m.get('tool_calls') or [] %}{% if m['content'] or not loop.first %}{{ '\n' }}{% endif %}"
        "{{ '<tool_call>\n' + ({'name': c['function']['name'], 'arguments': c['function']['arguments']} | tojson)"
        " + '\n</tool_call>' }}{% endfor %}{{ eos_token }}"
        "{% elif m['role'] == 'tool' %}{{ '<tool_response>\n' + m['content'] + '\n</tool_response><|im_end|>' }}"
        "{% else %}{{ m['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "mistral": (
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
        "{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
    ),
    "llama2": (  # Meta's format: every [INST] turn opens with BOS; the system prompt sits inside the first
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ bos_token + '[INST] <<SYS>>\n' + m['content'] + '\n<</SYS>>\n\n' }}"
        "{% elif m['role'] == 'user' %}"
        "{% if loop.index0 == 1 and messages[0]['role'] == 'system' %}{{ m['content'] + ' [/INST]' }}"
        "{% else %}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}{% endif %}"
        "{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
    ),
    "llama3": (
        "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '<|eot_id|>' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    # Phi-2's card: "Instruct: <prompt>\nOutput:". The space before the answer belongs to the answer: a
    # generation prompt ending in a space would be merged with the answer's first word by BPE tokenizers.
    "phi": (
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ 'System: ' + m['content'] + '\n' }}"
        "{% elif m['role'] == 'user' %}{{ 'Instruct: ' + m['content'] + '\n' }}"
        "{% else %}{{ 'Output: ' + m['content'] + eos_token + '\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ 'Output:' }}{% endif %}"
    ),
    "zephyr": (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
}


def install_chat_template(tokenizer: PreTrainedTokenizerBase, template: str) -> str:
    """Set the template the run uses on the tokenizer; return a short description of where it came from."""
    if template == "auto":
        if tokenizer.chat_template:
            return "the tokenizer's own chat template"
        template = "alpaca"
    if template in BUILTIN_TEMPLATES:
        tokenizer.chat_template = with_bos(BUILTIN_TEMPLATES[template], tokenizer)
        return f"built-in template {template!r}"
    path = Path(template)
    if not path.is_file():
        raise TuneforgeError(f"template file not found: {template} (data.template)")
    text = path.read_text()
    try:
        ImmutableSandboxedEnvironment().parse(text)
    except TemplateSyntaxError as exc:
        raise TuneforgeError(
            f"{template}: line {exc.lineno}: not a valid Jinja template ({exc.message})"
        ) from None
    tokenizer.chat_template = with_bos(text, tokenizer)
    return f"template file {template}"


def with_bos(template: str, tokenizer: PreTrainedTokenizerBase) -> str:
    """The template opening with BOS where the tokenizer puts BOS before plain text (as the model saw text
    in pretraining) and the template does not write it already."""
    bos = tokenizer.bos_token_id
    if bos is None or "bos_token" in template or tokenizer("a").input_ids[:1] != [bos]:
        return template
    return "{{ bos_token }}" + template
