"""The Ollama Modelfile's TEMPLATE, checked without a trained run: rendered as Ollama renders it, it gives
the training prompt (text and ids) for every built-in template, and a tokenizer whose llama.cpp ids
would differ from training's is refused. The whole `--format ollama` export is in tests/test_export.py."""

from __future__ import annotations

import copy

import pytest
from transformers import AutoTokenizer

from tuneforge.data.encode import ChatEncoder
from tuneforge.errors import TuneforgeError


def ollama_prompt(template: str, system: str | None, prompt: str) -> str:
    """Ollama's Go template, for the constructs tuneforge writes, rendered up to the response."""
    head, _, _ = template.partition("{{ .Response }}")
    if_part, _, rest = head.partition("{{ if .System }}")
    with_system, _, rest = rest.partition("{{ else }}")
    without, _, tail = rest.partition("{{ end }}")
    chosen = if_part + (with_system if system else without) + tail
    assert "{{" not in chosen.replace("{{ .System }}", "").replace("{{ .Prompt }}", "")
    return chosen.replace("{{ .System }}", system or "").replace("{{ .Prompt }}", prompt)


def modelfile_template(text: str) -> str:
    return text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]


@pytest.mark.parametrize(
    "template", ["alpaca", "chatml", "phi", "zephyr", "llama3", "mistral", "llama2", "raw"]
)
def test_ollama_template_renders_the_training_prompt(template, tiny_models):
    from tuneforge.data.templates import install_chat_template
    from tuneforge.export.ollama import modelfile

    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))  # byte-level BPE that adds BOS
    install_chat_template(tokenizer, template)
    encoder = ChatEncoder(tokenizer)
    written = modelfile(encoder, "model-f16.gguf", system_prompt="You are a doctor.")
    assert (
        f'PARAMETER stop "{tokenizer.eos_token}"' in written and 'SYSTEM """You are a doctor."""' in written
    )
    for system in (None, "You are a doctor."):
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": "What are the symptoms of Asthma?"})
        rendered = ollama_prompt(modelfile_template(written), system, messages[-1]["content"])
        assert not rendered.startswith(tokenizer.bos_token)
        training = encoder.render(messages, add_generation_prompt=True)
        assert tokenizer.bos_token + rendered == with_bos(tokenizer, training)
        # as llama.cpp reads it: BOS added, then the text's tokens: training's prompt ids
        assert tokenizer(rendered).input_ids == encoder.prompt_ids(messages)


@pytest.mark.parametrize("template", ["alpaca", "llama2"])
def test_ollama_refuses_a_tokenizer_whose_runtime_ids_would_differ(template, metaspace_tokenizer):
    """A SentencePiece tokenizer with prepend_scheme first: after BOS, llama.cpp puts a space that
    transformers (and so training) does not; a Modelfile cannot reproduce the training prompt."""
    from tuneforge.data.templates import install_chat_template
    from tuneforge.export.ollama import modelfile

    tokenizer = copy.deepcopy(metaspace_tokenizer)
    install_chat_template(tokenizer, template)
    with pytest.raises(TuneforgeError, match="Ollama .* would tokenize this model's prompts differently"):
        modelfile(ChatEncoder(tokenizer), "model-f16.gguf", system_prompt=None)


def with_bos(tokenizer, text: str) -> str:
    """The text as the model reads it: BOS, which llama.cpp adds itself (the GGUF's add_bos_token, as the
    tokenizer does), so the Modelfile must leave out a BOS the chat template writes as text."""
    return text if text.startswith(tokenizer.bos_token) else tokenizer.bos_token + text


@pytest.mark.parametrize("template, renders", [("chatml", True), ("alpaca", False)])
def test_a_template_that_renders_tools_is_named_since_the_modelfile_cannot(template, renders, tiny_models):
    """Ollama's TEMPLATE has no .Tools (its Go JSON differs from training's), so Ollama refuses tool requests
    rather than dropping the tools; the export says so for a template that renders them."""
    from tuneforge.data.templates import install_chat_template
    from tuneforge.export.ollama import ollama_template, renders_tools

    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    install_chat_template(tokenizer, template)
    encoder = ChatEncoder(tokenizer)
    assert renders_tools(encoder) is renders
    assert ".Tools" not in ollama_template(encoder)
