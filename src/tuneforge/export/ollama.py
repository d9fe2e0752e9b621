"""An Ollama `Modelfile` whose TEMPLATE reproduces the run's chat template for a system + user turn.

The template is not translated from Jinja by hand: the run's own template is rendered with marker strings
in place of the system message, the prompt and the answer, and the markers become Ollama's `{{ .System }}`,
`{{ .Prompt }}` and `{{ .Response }}`. llama.cpp adds BOS itself (the GGUF's add_bos_token), so a BOS the
template writes as text is left out. Ollama renders earlier turns of a chat with the same template, which
matches templates that repeat one pattern per turn (all built-in ones).

Tools are not translated: Ollama's Go templates write JSON their own way (compact, keys sorted), so no
TEMPLATE could give the tool prompts training saw. Without `.Tools` in the TEMPLATE, Ollama refuses a
request that offers tools instead of dropping them; the GGUF beside it carries the Jinja template with its
tool format, which llama.cpp renders (`llama-server --jinja`), as does `tuneforge serve`.
"""

from __future__ import annotations

from tuneforge.data.encode import ChatEncoder
from tuneforge.errors import TuneforgeError

SYSTEM_MARK, PROMPT_MARK, ANSWER_MARK = "TFSYSTEMMARK", "TFPROMPTMARK", "TFANSWERMARK"


def ollama_template(encoder: ChatEncoder) -> str:
    system = {"role": "system", "content": SYSTEM_MARK}
    user = {"role": "user", "content": PROMPT_MARK}
    with_system = without_bos(encoder, encoder.render([system, user], add_generation_prompt=True))
    plain = without_bos(encoder, encoder.render([user], add_generation_prompt=True))
    whole = encoder.render(
        [system, user, {"role": "assistant", "content": ANSWER_MARK}], add_generation_prompt=False
    )
    after_answer = whole.split(ANSWER_MARK, 1)[1] if ANSWER_MARK in whole else ""
    if SYSTEM_MARK not in with_system or PROMPT_MARK not in plain:
        raise TuneforgeError(
            "the run's chat template drops the system message or the prompt; cannot write TEMPLATE"
        )
    for text in (with_system, plain, after_answer):
        if "{{" in text or '"""' in text:
            raise TuneforgeError(
                "the chat template writes '{{' or '\"\"\"', which a Modelfile TEMPLATE cannot hold"
            )
    with_system = with_system.replace(SYSTEM_MARK, "{{ .System }}")
    prompt = "{{ .Prompt }}"
    return (
        f"{{{{ if .System }}}}{with_system.replace(PROMPT_MARK, prompt)}"
        f"{{{{ else }}}}{plain.replace(PROMPT_MARK, prompt)}{{{{ end }}}}{{{{ .Response }}}}{after_answer}"
    )


TOOLS_NOTICE = (
    "the run's chat template renders tools, which the Modelfile does not: Ollama will refuse requests that "
    "offer tools. For tool calls serve the GGUF with llama.cpp (llama-server --jinja, which renders the "
    "template the GGUF carries) or the run with tuneforge serve."
)


def renders_tools(encoder: ChatEncoder) -> bool:
    user = [{"role": "user", "content": PROMPT_MARK}]
    probe = [{"type": "function", "function": {"name": "tfprobe", "parameters": {"type": "object"}}}]
    return encoder.render(user, True, tools=probe) != encoder.render(user, True, tools=[])


def without_bos(encoder: ChatEncoder, text: str) -> str:
    bos = encoder.tokenizer.bos_token
    return text[len(bos) :] if encoder.adds_bos and bos and text.startswith(bos) else text


def stop_strings(encoder: ChatEncoder) -> list[str]:
    """Where generation ends: EOS, and the end-of-turn text the template writes after an answer."""
    stops = [encoder.tokenizer.eos_token]
    whole = encoder.render(
        [{"role": "user", "content": PROMPT_MARK}, {"role": "assistant", "content": ANSWER_MARK}],
        add_generation_prompt=False,
    )
    end_of_turn = whole.split(ANSWER_MARK, 1)[-1].strip()
    if end_of_turn and end_of_turn not in stops and end_of_turn in encoder.tokenizer.all_special_tokens:
        stops.append(end_of_turn)
    return stops


def check_runtime_ids(encoder: ChatEncoder) -> None:
    """llama.cpp adds BOS and then tokenizes the TEMPLATE's text, with SentencePiece's space prefix after
    it; transformers (and so training, whose template writes BOS) puts no space after a special token with
    some SentencePiece tokenizers (Metaspace, prepend_scheme first). Where the two differ Ollama would
    prompt the model differently from training: refused, not shipped."""
    messages = [{"role": "user", "content": "Count the lines in notes.txt."}]
    text = without_bos(encoder, encoder.render(messages, add_generation_prompt=True))
    runtime = encoder.tokenizer(text).input_ids  # BOS added as llama.cpp adds it, then the text
    if runtime != encoder.prompt_ids(messages):
        raise TuneforgeError(
            "--format ollama: Ollama (llama.cpp) would tokenize this model's prompts differently from training "
            "(its SentencePiece tokenizer puts a space after BOS that transformers does not), so the Modelfile "
            "cannot reproduce them. Export --format gguf or hf, whose checks pass with transformers."
        )


def modelfile(encoder: ChatEncoder, gguf_name: str, system_prompt: str | None) -> str:
    check_runtime_ids(encoder)
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{ollama_template(encoder)}"""']
    lines += [f"PARAMETER stop {quoted(stop)}" for stop in stop_strings(encoder)]
    if system_prompt:
        if '"""' in system_prompt:
            raise TuneforgeError('data.system_prompt contains \'"""\', which a Modelfile SYSTEM cannot hold')
        lines.append(f'SYSTEM """{system_prompt}"""')
    return "\n".join(lines) + "\n"


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
