"""Template parity: whatever renders a run's saved chat template the standard way (transformers'
`apply_chat_template(..., tokenize=True)`, which adds no special tokens; GGUF and Ollama runtimes the same)
builds the prompt ids training used, BOS included. The hf and GGUF exports are checked end to end in
tests/test_export.py; here every built-in template, a template file and a tokenizer's own template."""

from __future__ import annotations

import pytest
from conftest import quick_config, write_jsonl
from transformers import AutoTokenizer

from tuneforge.data.encode import ChatEncoder
from tuneforge.data.prepare import prepare_data
from tuneforge.data.templates import BUILTIN_TEMPLATES, install_chat_template

CONVERSATIONS = [
    [{"role": "user", "content": "count the lines in notes.txt"}],
    [
        {"role": "system", "content": "Answer with one shell command."},
        {"role": "user", "content": "count the lines in notes.txt"},
        {"role": "assistant", "content": "wc -l notes.txt"},
        {"role": "user", "content": "and the words?"},
    ],
]


def standard_ids(folder, messages) -> list[int]:
    """A user's own code: the saved tokenizer, its template, nothing of tuneforge."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return list(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    )


@pytest.mark.parametrize(
    "arch", ["llama", "gpt2"]
)  # a tokenizer that puts BOS before text, one that does not
@pytest.mark.parametrize("template", sorted(BUILTIN_TEMPLATES))
def test_every_builtin_template_renders_the_training_prompt_the_standard_way(
    tiny_models, tmp_path, arch, template
):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models(arch))
    install_chat_template(tokenizer, template)
    tokenizer.save_pretrained(tmp_path / "saved")  # as the run's adapter folder and every export hold it
    encoder = ChatEncoder(tokenizer)
    for messages in CONVERSATIONS:
        ours = encoder.prompt_ids(messages)
        assert standard_ids(tmp_path / "saved", messages) == ours
        bos = tokenizer.bos_token_id
        assert ours[:2] != [bos, bos]
        if arch == "llama":  # its tokenizer puts BOS before plain text: so does every prompt, once
            assert ours[0] == bos


def test_a_template_file_gets_bos_written_too(tiny_models, tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text(
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    install_chat_template(tokenizer, str(path))
    tokenizer.save_pretrained(tmp_path / "saved")
    for messages in CONVERSATIONS:
        assert standard_ids(tmp_path / "saved", messages) == ChatEncoder(tokenizer).prompt_ids(messages)


def rows(tmp_path):
    pairs = [{"prompt": f"count the lines in f{i}.txt", "completion": f"wc -l f{i}.txt"} for i in range(8)]
    return write_jsonl(tmp_path / "rows.jsonl", pairs)


def test_a_tokenizers_own_template_without_bos_fails_preflight_and_names_the_fix(tiny_models, tmp_path):
    """The model's own template is used as it is; one that leaves out the BOS the tokenizer puts before
    text would be prompted differently by every other runtime: preflight stops the run."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
    )
    config = quick_config(tiny_models("llama"), rows(tmp_path), data={"template": "auto"})
    checks = {c.name: c for c in prepare_data(config.data, tokenizer, 64).preflight}
    parity = checks["template_parity"]
    assert not parity.passed and parity.severity == "error" and "{{ bos_token }}" in parity.message
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template  # the fix the message names
    checks = {c.name: c for c in prepare_data(config.data, tokenizer, 64).preflight}
    assert checks["template_parity"].passed
