"""The one prompt encoder: a conversation (chat messages + the tokenizer's chat template) in, token ids out.

Training, `tuneforge generate` and every later inference path (evaluation, chat, app, server, preference
data) call this module; nothing else renders or tokenizes prompts.

Training samples are rendered once and tokenized once. A token is trained when it holds characters of an
assistant answer, found by character offsets: each answer starts where the template's generation prompt
(`add_generation_prompt=True`) for the conversation so far ends, and ends after the EOS the template
writes. So the trained ids are the tokenizer's own tokens of the text: no invented leading space, no
splits that real text never has, and EOS only where the template writes it.

Inference prompts are the conversation so far, rendered with `add_generation_prompt=True` and tokenized.

The boundary rule: where the tokenizer merges the last characters of a prompt with the first of its answer
(a generation prompt that ends in a space: 'Output: ' + 'wc' -> 'Ġwc'), the whole text wins. The merged
token is trained as part of the answer and that sample's training prompt differs from its inference
prompt; preflight `prompt_match` counts such samples.

    encoder = ChatEncoder(tokenizer)
    sample = encoder.encode_conversation(messages)     # input_ids, labels, answer spans
    ids = encoder.prompt_ids(messages[:-1])            # what generation feeds the model
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from tuneforge.data.agent import tools_of
from tuneforge.data.shapes import Message
from tuneforge.data.tool_format import opens_trace, parse_calls
from tuneforge.errors import TuneforgeError

IGNORE = -100

NOT_PREFIX = (
    "the chat template does not render a conversation as a prefix of its continuation (the text before an "
    "answer changes once the answer is added), so prompts and answers cannot be told apart; use another "
    "template (data.template)"
)


DROPS = (
    "the chat template does not write {what}, so training would teach the model to answer without them: use "
    "data.template chatml, whose tool format is documented, or a model whose own template renders them"
)


DROPS_EARLIER_REASONING = (
    "the chat template leaves out the reasoning of earlier assistant turns (as Qwen3's does), so those turns "
    "cannot be trained as the model wrote them: set data.train_on: final_turn (each row trains its last turn, "
    "trace included; earlier turns are prompt), or split the conversations into one row per assistant turn"
)


def not_prefix(messages: list[Message], text: str) -> str:
    """Why a conversation's turns cannot be told apart: a template that drops earlier traces is the common
    case, with its own remedy."""
    earlier = [t.get("reasoning_content") for t in messages[:-1] if t["role"] == "assistant"]
    if any(trace and trace.strip() not in text for trace in earlier):
        return DROPS_EARLIER_REASONING
    return NOT_PREFIX


@dataclass(frozen=True)
class AnswerSpan:
    """One trained answer inside an encoded sample: its tokens are input_ids[start:end]."""

    turn: int  # index of the assistant message in the conversation
    start: int
    end: int
    text: str  # the answer as rendered: its content plus what the template writes with it (EOS)
    merged: str = ""  # prompt characters the tokenizer merged into the answer's first token (boundary rule)


@dataclass(frozen=True)
class EncodedSample:
    input_ids: list[int]
    labels: list[int]
    answers: tuple[AnswerSpan, ...] = ()


class ChatEncoder:
    """A tokenizer with its chat template installed, plus the facts about it that encoding depends on."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        if tokenizer.eos_token_id is None:
            raise TuneforgeError("the tokenizer has no EOS token; set one so the model can learn to stop")
        if not getattr(tokenizer, "is_fast", False):
            raise TuneforgeError(
                f"{type(tokenizer).__name__} is a slow tokenizer: tuneforge masks answers by character "
                "offsets, which only fast (Rust `tokenizers`) tokenizers report. Use the model's tokenizer.json."
            )
        self.tokenizer = tokenizer
        bos = tokenizer.bos_token_id
        self.adds_bos = bos is not None and tokenizer("a").input_ids[:1] == [bos]

    def render(
        self, messages: list[Message], add_generation_prompt: bool, tools: list[dict] | None = None
    ) -> str:
        """The template's text; `tools` (default: the conversation's own, agent.Conversation) go with it."""
        tools = tools if tools is not None else tools_of(messages)
        try:
            return self.tokenizer.apply_chat_template(
                list(messages), tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except TemplateError as exc:
            raise TuneforgeError(
                f"the chat template cannot render this conversation: {exc} (data.template)"
            ) from exc

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The ids generation feeds the model for a conversation whose next turn is the assistant's."""
        ids, _ = self._tokenize(self.render(messages, add_generation_prompt=True))
        return self._bos() + ids if self._needs_bos(ids) else ids

    def standard_prompt_ids(self, messages: list[Message]) -> list[int]:
        """The ids transformers' own `apply_chat_template(..., tokenize=True)` builds, adding no special
        tokens: what every other runtime of the saved template (an hf export, GGUF, Ollama) sends. The
        template-parity check compares them with `prompt_ids`."""
        out = self.tokenizer.apply_chat_template(
            list(messages), tools=tools_of(messages), add_generation_prompt=True, tokenize=True
        )
        return list(out["input_ids"] if isinstance(out, Mapping) else out)

    def text_prompt_ids(self, text: str) -> list[int]:
        """The ids of raw text to continue (no template, no EOS): what a completions endpoint feeds."""
        ids, _ = self._tokenize(text)
        return self._bos() + ids if self._needs_bos(ids) else ids

    def encode_conversation(self, messages: list[Message], train_on: str = "completion") -> EncodedSample:
        """ids and labels for a conversation that ends with an assistant answer: every answer is trained, or
        with train_on "final_turn" only the last (earlier turns are prompt, as the template renders history)."""
        text, spans = self.answer_spans(messages, final_only=train_on == "final_turn")
        # What the template writes after the final answer's EOS is never trained, nor needed.
        text = text[: spans[-1][2]]
        ids, offsets = self._tokenize(text)
        labels = list(ids) if train_on == "all" else [IGNORE] * len(ids)
        answers, token = [], 0
        for turn, first_char, end_char in spans:
            while token < len(ids) and offsets[token][1] <= first_char:
                token += 1
            start = token  # a token that straddles the boundary holds answer characters: it is trained
            merged = text[min(offsets[start][0], first_char) : first_char] if start < len(ids) else ""
            while token < len(ids) and offsets[token][0] < end_char:
                token += 1
            labels[start:token] = ids[start:token]
            answers.append(AnswerSpan(turn, start, token, text[first_char:end_char], merged))
        if ids[:1] == self._bos():  # written by the template: position 0 is never a target, BOS stays -100
            labels[0] = IGNORE
        if self._needs_bos(ids):
            ids, labels = self._bos() + ids, [IGNORE] + labels
            answers = [replace(a, start=a.start + 1, end=a.end + 1) for a in answers]
        return EncodedSample(ids, labels, tuple(answers))

    def encode_text(self, text: str) -> EncodedSample:
        """Plain text (continued pretraining): every token is trained and EOS closes the document."""
        ids, _ = self._tokenize(text)
        ids = [*ids, self.tokenizer.eos_token_id]
        if self._needs_bos(ids):
            return EncodedSample(self._bos() + ids, [IGNORE, *ids])
        return EncodedSample(ids, list(ids))

    def answer_spans(
        self, messages: list[Message], final_only: bool = False
    ) -> tuple[str, list[tuple[int, int, int]]]:
        """The rendered conversation, and for each assistant turn (the last one only, with final_only)
        (message index, first char, end char) of its answer. An answer runs from the end of its generation
        prompt to the end of the EOS the template writes after it (to the end of the turn when the template
        writes none)."""
        tools = tools_of(messages)
        text = self.render(messages, add_generation_prompt=False)
        if tools and text == self.render(messages, add_generation_prompt=False, tools=[]):
            raise TuneforgeError(DROPS.format(what="the tools a row offers (its tools column)"))
        results = [turn for turn in messages if turn["role"] == "tool" and turn["content"]]
        if results:
            blank = [{**turn, "content": ""} if turn["role"] == "tool" else turn for turn in messages]
            if self.render(blank, add_generation_prompt=False, tools=tools) == text:
                raise TuneforgeError(DROPS.format(what="tool results"))
        eos = self.tokenizer.eos_token
        spans: list[tuple[int, int, int]] = []
        for index, turn in enumerate(messages):
            if turn["role"] != "assistant" or (final_only and index < len(messages) - 1):
                continue
            prompt = self.render(messages[:index], add_generation_prompt=True, tools=tools)
            upto = self.render(messages[: index + 1], add_generation_prompt=False, tools=tools)
            if not (upto.startswith(prompt) and text.startswith(upto)):
                raise TuneforgeError(not_prefix(messages, text))
            if spans and len(prompt) < spans[-1][2]:
                raise TuneforgeError(NOT_PREFIX)
            answer = upto[len(prompt) :]
            self.check_turn_rendered(messages[:index], turn, upto, answer, tools)
            # The EOS the template writes after the content, not an EOS string inside the content itself.
            content_at = answer.find(turn["content"])
            eos_at = answer.find(eos, content_at + len(turn["content"]) if content_at >= 0 else 0)
            length = eos_at + len(eos) if eos_at >= 0 else len(answer)
            spans.append((index, len(prompt), len(prompt) + length))
        return text, spans

    def check_turn_rendered(
        self, before: list[Message], turn: Message, upto: str, answer: str, tools
    ) -> None:
        """A tool call or reasoning trace the template leaves out would train an answer without it; a call
        written in a known format (tool_format.py) must parse back into the row's call."""
        for key, what in (("tool_calls", "tool calls"), ("reasoning_content", "reasoning traces")):
            if turn.get(key):
                bare = {k: v for k, v in turn.items() if k != key}
                if self.render([*before, bare], add_generation_prompt=False, tools=tools) == upto:
                    raise TuneforgeError(DROPS.format(what=what))
        parsed = parse_calls(answer)
        wanted = [
            {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            for c in turn.get("tool_calls") or ()
        ]
        if parsed is not None and parsed != wanted:
            raise TuneforgeError(
                f"the chat template writes tool calls that do not parse back into the row's calls: {parsed} "
                f"instead of {wanted}; the model would learn calls tuneforge cannot read back"
            )

    def opens_trace(self, prompt_ids: list[int]) -> bool:
        """Whether the prompt ends inside a reasoning trace it opened (a DeepSeek-R1-style template writes
        <think> into the generation prompt), so the answer starts with the trace's text."""
        return opens_trace(self._decode(prompt_ids[-16:]))

    def decode_span(self, ids: list[int], start: int, end: int) -> str:
        """The text ids[start:end] stand for where they are. Decoding a slice on its own would drop a
        SentencePiece leading space, so decode the prefixes and take the difference."""
        before = self._decode(ids[:start])
        whole = self._decode(ids[:end])
        return whole[len(before) :] if whole.startswith(before) else self._decode(ids[start:end])

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return encoded["input_ids"], encoded["offset_mapping"]

    def _needs_bos(self, ids: list[int]) -> bool:
        """BOS once, as the tokenizer adds it to plain text, unless the template already wrote it."""
        return self.adds_bos and ids[:1] != self._bos()

    def _bos(self) -> list[int]:
        return [self.tokenizer.bos_token_id]
