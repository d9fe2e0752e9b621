"""Agent and reasoning data: tool calls, tool results, the row's tools and reasoning traces are read from
the shapes users bring, rendered by the model's own chat template (or the built-in chatml tool format) and
masked by the one encoder: assistant text, calls and reasoning trained; tool results, user and system
turns never; the inference prompt is the rendered prefix, token for token."""

from __future__ import annotations

import json

import pytest
from conftest import needs_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tuneforge.config.schema import DataConfig
from tuneforge.data.agent import Conversation
from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.shapes import check_messages, row_formatter
from tuneforge.data.templates import install_chat_template
from tuneforge.errors import TuneforgeError

# A tool-aware template unlike the built-in one (Llama-3.1-like JSON calls, results as "ipython" turns).
OWN_TEMPLATE = (
    "{% if tools %}{{ 'TOOLS ' + (tools | tojson) + '\\n' }}{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}{{ 'A: ' }}"
    "{% if m.get('reasoning_content') %}{{ '[think] ' + m['reasoning_content'] + ' [/think] ' }}{% endif %}"
    "{{ m['content'] }}{% for c in m.get('tool_calls') or [] %}"
    "{{ ' CALL ' + ({'name': c['function']['name'], 'parameters': c['function']['arguments']} | tojson) }}"
    "{% endfor %}{{ eos_token + '\\n' }}"
    "{% elif m['role'] == 'tool' %}{{ 'RESULT: ' + m['content'] + '\\n' }}"
    "{% else %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'A:' }}{% endif %}"
)
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "count_lines", "parameters": {"type": "object", "properties": {
        "file": {"type": "string"}}}}},
]  # fmt: skip

words = st.text("abcdefghij", min_size=1, max_size=6)


@st.composite
def conversations(draw) -> Conversation:
    """A system turn or not, a question, assistant turns that call tools (with results) or reason, and a
    final answer. Each role's text carries its own marker word, so a trained result or question shows."""
    turns = [{"role": "system", "content": "sysmark " + draw(words)}] if draw(st.booleans()) else []
    turns.append({"role": "user", "content": "usermark " + draw(words)})
    for _ in range(draw(st.integers(0, 2))):
        calls = [
            {
                "type": "function",
                "function": {"name": tool["function"]["name"], "arguments": {"arg": draw(words)}},
            }
            for tool in draw(st.lists(st.sampled_from(TOOLS), min_size=1, max_size=2))
        ]
        turn = {"role": "assistant", "content": draw(st.sampled_from(["", "let me check " + draw(words)])),
                "tool_calls": calls}  # fmt: skip
        if draw(st.booleans()):
            turn["reasoning_content"] = "thinkmark " + draw(words)
        turns.append(turn)
        turns += [{"role": "tool", "content": "resultmark " + draw(words)} for _ in calls]
    final = {"role": "assistant", "content": "answer " + draw(words)}
    if draw(st.booleans()):
        final["reasoning_content"] = "thinkmark " + draw(words)
    turns.append(final)
    return Conversation(turns, TOOLS if draw(st.booleans()) else None)


def check_encoding(encoder: ChatEncoder, conversation: Conversation) -> None:
    check_messages(conversation, "row")
    sample = encoder.encode_conversation(conversation)
    assistant = [i for i, turn in enumerate(conversation) if turn["role"] == "assistant"]
    assert [a.turn for a in sample.answers] == assistant
    trained = [i for i, label in enumerate(sample.labels) if label != IGNORE]
    spans = [i for a in sample.answers for i in range(a.start, a.end)]
    assert trained == spans, "only the answers' tokens are trained"
    for answer in sample.answers:
        turn = conversation[answer.turn]
        text = encoder.decode_span(sample.input_ids, answer.start, answer.end)
        assert text == answer.text and text.endswith(encoder.tokenizer.eos_token)
        assert turn["content"] in text and turn.get("reasoning_content", "") in text
        for call in turn.get("tool_calls", []):
            assert call["function"]["name"] in text and json.dumps(call["function"]["arguments"]) in text
        for mark in ("usermark", "sysmark", "resultmark"):
            assert mark not in text, f"a {mark[:-4]} turn was trained"
        prompt = encoder.prompt_ids(Conversation(conversation[: answer.turn], conversation.tools))
        if not answer.merged:
            assert sample.input_ids[: answer.start] == prompt, "the inference prompt is the rendered prefix"


@pytest.fixture(scope="module")
def own_template(tiny_models) -> ChatEncoder:
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    tokenizer.chat_template = OWN_TEMPLATE
    return ChatEncoder(tokenizer)


@pytest.fixture(scope="module")
def stories_chatml() -> ChatEncoder:
    tokenizer = AutoTokenizer.from_pretrained(needs_shared("models", "stories260K"))
    install_chat_template(tokenizer, "chatml")
    return ChatEncoder(tokenizer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=conversations())
def test_a_tool_aware_template_of_the_tokenizer_is_masked_right(own_template, conversation):
    check_encoding(own_template, conversation)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=conversations())
def test_the_built_in_tool_format_on_stories260k_is_masked_right(stories_chatml, conversation):
    check_encoding(stories_chatml, conversation)


def rows_to_messages(fmt: str, row: dict):
    return row_formatter(fmt, DataConfig(path="x.jsonl", format=fmt))(row, "x.jsonl row 1")


def test_openai_rows_with_tool_calls_results_and_tools_are_read():
    row = {
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },  # fmt: skip
            {"role": "tool", "tool_call_id": "c1", "content": {"temp": 21}},
            {"role": "assistant", "content": "21 degrees", "thinking": "the tool said 21"},
        ],
        "tools": json.dumps(TOOLS),
    }
    messages = rows_to_messages("messages", row)
    assert messages[1] == {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "c1",
                           "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}  # fmt: skip
    assert messages[2] == {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "c1"}
    assert messages[3]["reasoning_content"] == "the tool said 21" and messages.tools == TOOLS


def test_sharegpt_function_call_and_observation_turns_are_read():
    row = {"conversations": [
        {"from": "human", "value": "weather in Paris?"},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
        {"from": "observation", "value": '{"temp": 21}'},
        {"from": "gpt", "value": "21 degrees"},
    ], "tools": TOOLS}  # fmt: skip
    messages = rows_to_messages("sharegpt", row)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert messages.tools == TOOLS and messages[:2].tools == TOOLS, "slices keep the row's tools"


@pytest.mark.parametrize(
    "turn, message",
    [
        ({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{city"}}]},
         "turn 1, tool call 0: the arguments of tool call 'f' is not valid JSON"),
        ({"role": "assistant", "content": "x", "tool_calls": [{"function": {"arguments": "{}"}}]},
         "turn 1, tool call 0: a tool call has no function name"),
        ({"role": "assistant", "content": None}, "turn 1: content is null"),
    ],
)  # fmt: skip
def test_broken_tool_calls_are_errors_naming_the_row_and_turn(turn, message):
    row = {"messages": [{"role": "user", "content": "q"}, turn]}
    with pytest.raises(TuneforgeError, match=message.replace("(", r"\(")):
        rows_to_messages("messages", row)


def test_a_template_that_does_not_write_tool_calls_is_refused(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    install_chat_template(tokenizer, "alpaca")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    conversation = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    with pytest.raises(TuneforgeError, match="does not write tool calls"):
        ChatEncoder(tokenizer).encode_conversation(conversation)


def test_a_tool_result_with_no_call_before_it_is_refused():
    with pytest.raises(TuneforgeError, match="turn 1: a tool result must follow"):
        check_messages(
            [
                {"role": "user", "content": "q"},
                {"role": "tool", "content": "r"},
                {"role": "assistant", "content": "a"},
            ],
            "row",
        )


def test_generate_and_grpo_prompts_keep_the_rows_tools(tiny_models, tmp_path):
    """A row's tools are part of its prompt wherever it is prompted: `tuneforge generate`'s input rows and
    GRPO's prompt track render them as training does."""
    from conftest import write_jsonl

    from tuneforge.data.prepare import prepare_data
    from tuneforge.data.prompts import PROMPTS
    from tuneforge.infer.inputs import prompts_from_file

    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    install_chat_template(tokenizer, "chatml")
    encoder = ChatEncoder(tokenizer)
    turns = [{"role": "user", "content": "weather in Paris?"}, {"role": "assistant", "content": "sunny"}]
    path = write_jsonl(tmp_path / "rows.jsonl", [{"messages": turns, "tools": TOOLS}] * 4)
    data = DataConfig(path=str(path), eval_path=str(path), format="messages")
    with_tools = encoder.prompt_ids(Conversation(turns[:1], TOOLS))
    assert with_tools != encoder.prompt_ids(turns[:1]), "the tools are in the prompt"
    assert [row.messages for row in prompts_from_file(path, data, "messages")][0].tools == TOOLS
    assert encoder.prompt_ids(prompts_from_file(path, data, "messages")[0].messages) == with_tools
    prepared = prepare_data(data, tokenizer, None, 2048, track=PROMPTS)
    assert prepared.train["prompt_ids"][0] == with_tools


def test_sft_data_with_tools_and_a_final_tool_call_is_prepared_and_matches_inference(tiny_models, tmp_path):
    """The SFT track end to end: a row whose answer is only a call is kept (it is not empty), and every
    answer's training prefix is the inference prompt with the row's tools (preflight prompt_match)."""
    from conftest import write_jsonl

    from tuneforge.data.prepare import prepare_data

    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    install_chat_template(tokenizer, "chatml")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    rows = [
        {"messages": [{"role": "user", "content": f"weather in town {i}?"},
                      {"role": "assistant", "content": None, "tool_calls": [call]}], "tools": TOOLS}
        for i in range(6)
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    prepared = prepare_data(
        DataConfig(path=str(path), eval_path=str(path), format="messages"), tokenizer, 2048, 4096
    )
    assert len(prepared.train) == 6, "a call is an answer"
    checks = {check.name: check for check in prepared.preflight}
    assert checks["prompt_match"].passed, checks["prompt_match"].message


def dropping(field: str) -> str:
    """OWN_TEMPLATE with one field left out."""
    return {
        "tools": OWN_TEMPLATE.replace("{% if tools %}", "{% if false %}"),
        "results": OWN_TEMPLATE.replace("{{ 'RESULT: ' + m['content'] + '\\n' }}", "{{ 'RESULT\\n' }}"),
        "reasoning": OWN_TEMPLATE.replace("{% if m.get('reasoning_content') %}", "{% if false %}"),
    }[field]


@pytest.mark.parametrize("field", ["tools", "results", "reasoning"])
def test_a_template_that_drops_what_the_data_trains_is_refused(tiny_models, field):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    tokenizer.chat_template = dropping(field)
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    conversation = Conversation(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call]},
         {"role": "tool", "content": "21"}, {"role": "assistant", "content": "a", "reasoning_content": "r"}],
        TOOLS,
    )  # fmt: skip
    with pytest.raises(TuneforgeError, match="does not write"):
        ChatEncoder(tokenizer).encode_conversation(conversation)
    tokenizer.chat_template = OWN_TEMPLATE
    ChatEncoder(tokenizer).encode_conversation(conversation)  # the whole template writes them all


def test_preference_rows_with_tool_turns_are_refused_not_flattened():
    from tuneforge.data.pairs.rows import as_messages

    with pytest.raises(TuneforgeError, match="turn 1: tool calls and tool results are not supported"):
        as_messages([{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}], "pairs.jsonl row 3")


def weather_call(arguments: dict, call_id: str | None = None) -> dict:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    return {**call, "id": call_id} if call_id else call


@pytest.mark.parametrize(
    "turns, message",
    [
        ([{"role": "assistant", "content": "", "tool_calls": [weather_call({"city": 3})]}],
         "turn 1: the arguments of 'get_weather' do not match its schema (city: 3 is not of type 'string')"),
        ([{"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "send_mail", "arguments": {}}}]}],
         "turn 1: calls 'send_mail', which the row's tools do not offer (get_weather, count_lines)"),
        ([{"role": "assistant", "content": "", "tool_calls": [weather_call({"city": "Paris"})]},
          {"role": "tool", "content": "21"}, {"role": "tool", "content": "22"}],
         "turn 3: a tool result with no call left to answer"),
        ([{"role": "assistant", "content": "", "tool_calls": [weather_call({"city": "Paris"}, "c1")]},
          {"role": "tool", "content": "21", "tool_call_id": "c9"}],
         "turn 2: tool_call_id 'c9' answers no call of the turn before it"),
    ],
)  # fmt: skip
def test_calls_and_results_that_do_not_fit_the_rows_tools_are_refused(turns, message):
    conversation = Conversation(
        [{"role": "user", "content": "q"}, *turns, {"role": "assistant", "content": "done"}], TOOLS
    )
    with pytest.raises(TuneforgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_messages(conversation, "rows.jsonl row 7")
    fitting = Conversation(
        [{"role": "user", "content": "q"}, turns[0], {"role": "assistant", "content": "a"}]
    )
    fitting[1] = {**turns[0], "tool_calls": [weather_call({"city": "Paris"})]}
    check_messages(Conversation(fitting, TOOLS), "rows.jsonl row 7")  # the same turn, fitting the schema


def test_a_rendered_call_must_parse_back_into_the_rows_call(tiny_models):
    """chatml's calls round-trip (the property test renders hundreds); a Hermes-like template that writes
    the arguments under another key would train calls the server could not read back: refused."""
    from tuneforge.data.templates import BUILTIN_TEMPLATES
    from tuneforge.data.tool_format import parse_calls

    assert parse_calls('x <tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>') == [
        {"name": "f", "arguments": {"a": 1}}
    ]
    assert parse_calls("<tool_call>not json</tool_call>") == [{"name": None, "raw": "not json"}]
    assert parse_calls("no call here") is None
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"].replace("'arguments': c", "'args': c")
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}]  # fmt: skip
    with pytest.raises(TuneforgeError, match="do not parse back into the row's calls"):
        ChatEncoder(tokenizer).encode_conversation(conversation)
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    ChatEncoder(tokenizer).encode_conversation(conversation)


# As Qwen3's: a trace is written only for turns after the last user message, so earlier traces vanish.
DROPPING_TEMPLATE = OWN_TEMPLATE.replace(
    "{% for m in messages %}",
    "{% set ns = namespace(last=0) %}{% for m in messages %}{% if m['role'] == 'user' %}"
    "{% set ns.last = loop.index0 %}{% endif %}{% endfor %}{% for m in messages %}",
).replace(
    "{% if m.get('reasoning_content') %}", "{% if m.get('reasoning_content') and loop.index0 > ns.last %}"
)


@pytest.fixture(scope="module")
def dropping_template(tiny_models) -> ChatEncoder:
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    tokenizer.chat_template = DROPPING_TEMPLATE
    return ChatEncoder(tokenizer)


def two_exchanges(reasoning: str, answer: str) -> Conversation:
    return Conversation([
        {"role": "user", "content": "usermark one"},
        {"role": "assistant", "content": "first answer", "reasoning_content": "thinkmark early"},
        {"role": "user", "content": "usermark two"},
        {"role": "assistant", "content": answer, "reasoning_content": reasoning},
    ])  # fmt: skip


def test_a_template_that_drops_earlier_traces_is_named_when_the_data_trains_them(dropping_template):
    with pytest.raises(
        TuneforgeError, match="leaves out the reasoning of earlier assistant turns.*final_turn"
    ):
        dropping_template.encode_conversation(two_exchanges("thinkmark late", "second answer"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=conversations(), earlier=st.lists(words, min_size=1, max_size=2))
def test_final_turn_trains_the_last_turn_with_its_trace_and_nothing_before(
    dropping_template, conversation, earlier
):
    turns = [t for w in earlier for t in ({"role": "user", "content": "usermark " + w},
             {"role": "assistant", "content": "old " + w, "reasoning_content": "thinkmark " + w})]  # fmt: skip
    conversation = Conversation([*turns, *conversation], conversation.tools)
    sample = dropping_template.encode_conversation(conversation, train_on="final_turn")
    (answer,) = sample.answers
    assert answer.turn == len(conversation) - 1
    trained = [i for i, label in enumerate(sample.labels) if label != IGNORE]
    assert trained == list(range(answer.start, answer.end))
    text = dropping_template.decode_span(sample.input_ids, answer.start, answer.end)
    final = conversation[-1]
    expected = (
        "[think] " + final["reasoning_content"] + " [/think] " if final.get("reasoning_content") else ""
    )
    assert text == " " + expected + final["content"] + dropping_template.tokenizer.eos_token
    prompt = dropping_template.prompt_ids(Conversation(conversation[:-1], conversation.tools))
    assert sample.input_ids[: answer.start] == prompt
