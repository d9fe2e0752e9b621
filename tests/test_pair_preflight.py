"""Preference rows: each pair check catches its planted fault through the real training entry point (and a
clean file passes every check); the row shapes users bring are read and encoded as the docs say."""

from __future__ import annotations

import pytest
from conftest import quick_config, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tuneforge.config.schema import DataConfig
from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.pairs.encode import encode_branch, encode_preferences
from tuneforge.data.pairs.rows import check_preference_columns, preference_item
from tuneforge.data.templates import install_chat_template
from tuneforge.errors import TuneforgeError
from tuneforge.train.preview import data_report as preference_report
from tuneforge.train.run import run_finetune

# A generation prompt that ends in a space: the tokenizer merges it into the answer's first token.
SPACE_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\\n' }}"
    "{% else %}{{ 'A: ' + m['content'] + eos_token + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
)


def clean_pairs(n: int = 12) -> list[dict]:
    return [
        {"prompt": f"list the files {i}", "chosen": f"ls dir{i}", "rejected": f"rm dir{i}"} for i in range(n)
    ]


def config_for(tiny_models, tmp_path, rows, template="alpaca", max_length=128, **preflight):
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    return quick_config(
        tiny_models("llama"),
        path,
        data={"template": template, "eval_fraction": 0.0, "preflight": preflight},
        train={"method": "dpo", "max_length": max_length},
    )


def space_template(tmp_path) -> str:
    path = tmp_path / "space.jinja"
    path.write_text(SPACE_TEMPLATE)
    return str(path)


PLANTED = {
    # rejected answers that start with whitespace: the prompt's last space is not merged into them
    "pair_prompt": lambda tmp: (
        [{**r, "rejected": " " + r["rejected"]} for r in clean_pairs()],
        space_template(tmp),
        128,
    ),
    # both answers start with the same word, merged with the prompt's last space: the branches agree, but
    # their prompt lacks the space token inference ends with
    "prompt_match": lambda tmp: (
        [{**r, "rejected": r["chosen"].replace("ls", "ls -la")} for r in clean_pairs()],
        space_template(tmp),
        128,
    ),
    "pair_differs": lambda tmp: (
        [*clean_pairs(), {"prompt": "p", "chosen": "same", "rejected": "same"}],
        "alpaca",
        128,
    ),
    "pair_differs_after_cut": lambda tmp: (
        [*clean_pairs(), {"prompt": "p", "chosen": "word " * 80 + "yes", "rejected": "word " * 80 + "no"}],
        "alpaca",
        64,
    ),
    "empty_branch": lambda tmp: (
        [*clean_pairs(), {"prompt": "p", "chosen": "ok", "rejected": " "}],
        "alpaca",
        128,
    ),
    "empty_branch_after_cut": lambda tmp: (
        [*clean_pairs(), {"prompt": "word " * 80, "chosen": "yes", "rejected": "no"}],
        "alpaca",
        64,
    ),
}


@pytest.mark.parametrize("fault", sorted(PLANTED))
def test_each_pair_check_stops_training_on_its_planted_fault(fault, tiny_models, tmp_path):
    rows, template, max_length = PLANTED[fault](tmp_path)
    check = fault.removesuffix("_after_cut")
    # the long planted row is cut by design; the truncation check would stop the run too
    config = config_for(tiny_models, tmp_path, rows, template, max_length, max_truncated_fraction=0.5)
    with pytest.raises(TuneforgeError, match=rf"preflight failed before training:[\s\S]*- {check}:") as error:
        run_finetune(config, tmp_path / "run")
    assert not (tmp_path / "run").exists(), "nothing is written before the checks pass"
    failed = {
        line.split(":")[0].strip("- ") for line in str(error.value).splitlines() if line.startswith("  - ")
    }
    expected = {"pair_prompt", "prompt_match"} if check == "pair_prompt" else {check}
    assert failed == expected, str(error.value)


def test_a_clean_file_passes_every_pair_check(tiny_models, tmp_path):
    data, report, _ = preference_report(config_for(tiny_models, tmp_path, clean_pairs()))
    assert [c["check"] for c in report["preflight"]] == [
        "pair_prompt",
        "prompt_match",
        "pair_differs",
        "empty_branch",
        "truncation",
        "template_parity",
    ]
    assert all(c["passed"] for c in report["preflight"]), report["preflight"]
    assert report["rows"]["train"] == 12


def test_the_cut_that_leaves_a_pair_identical_names_max_length(tiny_models, tmp_path):
    rows, template, length = PLANTED["pair_differs_after_cut"](tmp_path)
    _, report, _ = preference_report(
        config_for(tiny_models, tmp_path, rows, template, length, pair_differs="warn", truncation="off")
    )
    finding = next(c for c in report["preflight"] if c["check"] == "pair_differs")
    assert not finding["passed"] and "differ only beyond train.max_length=64" in finding["finding"]
    assert report["dropped"]["same_tokens_in_both_branches"] == 1 and report["rows"]["train"] == 12


@pytest.fixture(scope="module")
def encoder(tiny_models) -> ChatEncoder:
    tokenizer = AutoTokenizer.from_pretrained(tiny_models("llama"))
    install_chat_template(tokenizer, "chatml")
    return ChatEncoder(tokenizer)


HISTORY = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "list files"},
]


def test_history_prompts_train_only_the_final_answer(encoder):
    data = DataConfig(path="x", system_prompt="Be brief.")
    item = preference_item(
        {"prompt": HISTORY, "chosen": "ls", "rejected": "rm -rf /"}, "pairs", data, "row 0"
    )
    assert item.prompt[0] == {"role": "system", "content": "Be brief."} and item.prompt[1:] == HISTORY
    for answer in (0, 1):
        branch = encode_branch(encoder, item, answer)
        assert branch.input_ids[: branch.prompt_length] == encoder.prompt_ids(item.prompt)
        trained = [i for i, label in enumerate(branch.labels) if label != IGNORE]
        assert trained[0] == branch.prompt_length, "the earlier assistant turn is prompt, not trained"
        assert encoder.decode_span(branch.input_ids, trained[0], trained[-1] + 1).startswith(
            item.answers[answer]
        )


def test_implicit_prompt_messages_column_and_kto_labels(encoder):
    data = DataConfig(path="x")
    chosen = [*HISTORY, {"role": "assistant", "content": "ls"}]
    rejected = [*HISTORY, {"role": "assistant", "content": "rm"}]
    item = preference_item({"chosen": chosen, "rejected": rejected}, "pairs", data, "row 0")
    assert item.prompt == HISTORY and item.answers == ("ls", "rm")
    item = preference_item({"messages": HISTORY, "chosen": "ls", "rejected": "rm"}, "pairs", data, "row 1")
    assert item.prompt == HISTORY
    item = preference_item({"prompt": HISTORY, "chosen": chosen, "rejected": "rm"}, "pairs", data, "row 1")
    assert item.answers == ("ls", "rm"), "the history repeated before the answer is the prompt's"
    for value, expected in ((True, True), ("false", False), (1, True), ("No", False)):
        row = {"prompt": "q", "completion": [{"role": "assistant", "content": "a"}], "label": value}
        assert preference_item(row, "kto", data, "row 2").desirable is expected


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {
                "chosen": [*HISTORY, {"role": "assistant", "content": "a"}],
                "rejected": [HISTORY[0], {"role": "assistant", "content": "b"}],
            },
            "differ before their last turn",
        ),
        ({"prompt": HISTORY[:2], "chosen": "a", "rejected": "b"}, "prompt ends with an assistant turn"),
        ({"chosen": "a", "rejected": "b"}, "no prompt"),
        (
            {
                "prompt": "list files",
                "chosen": [*HISTORY, {"role": "assistant", "content": "ls"}],
                "rejected": "rm",
            },
            "turns before the answer differ from the prompt",
        ),
        (
            {"prompt": [{"from": "human", "value": "hi"}], "chosen": "a", "rejected": "b"},
            "list of \\{role, content\\}",
        ),
        ({"prompt": "q", "chosen": [], "rejected": "b"}, "must end with an assistant turn"),
        (
            {"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
            "must end with an assistant turn",
        ),
    ],
)
def test_malformed_pairs_name_the_row(row, message):
    with pytest.raises(TuneforgeError, match=rf"data.jsonl row 7.*{message}"):
        preference_item(row, "pairs", DataConfig(path="x"), "data.jsonl row 7")


def test_bad_kto_label_and_missing_columns_are_named():
    with pytest.raises(TuneforgeError, match=r"row 3, label: label 'maybe' is not true or false"):
        preference_item(
            {"prompt": "q", "completion": "a", "label": "maybe"}, "kto", DataConfig(path="x"), "row 3"
        )
    with pytest.raises(
        TuneforgeError, match=r"pairs.jsonl: column 'rejected' not found .*Columns that exist: prompt, chosen"
    ):
        check_preference_columns(["prompt", "chosen"], "pairs", DataConfig(path="x"), "pairs.jsonl")
    columns = DataConfig(path="x", columns={"chosen": "good", "rejected": "bad"})
    check_preference_columns(["prompt", "good", "bad"], "pairs", columns, "pairs.jsonl")


# Answers that start with whitespace may merge with the newline before them: the boundary rule (README).
words = st.text(alphabet="abcdefgh ijk\n.,!?'", min_size=1, max_size=30).filter(
    lambda s: s.strip() and not s[0].isspace()
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=words, chosen=words, rejected=words)
def test_any_pair_shares_the_inference_prompt_under_a_template_that_ends_prompts_with_a_newline(
    encoder, prompt, chosen, rejected
):
    item = preference_item(
        {"prompt": prompt, "chosen": chosen, "rejected": rejected}, "pairs", DataConfig(path="x"), "r"
    )
    _, stats = encode_preferences([item], encoder, max_length=512, context_length=None, source="property")
    assert stats.prompt_differs == [] and stats.prompt_mismatches == []
    assert stats.identical == ([0] if chosen == rejected else [])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"data": {"path": "p.jsonl", "format": "messages"}}, "reads preference rows by their columns"),
        ({"eval": {"during_training": True}}, "eval.during_training and train.packing are for sft runs"),
        ({"distributed": {"strategy": "fsdp"}}, "needs whole weights on each process"),
        (
            {"lora": {"method": "full"}, "model": {"name_or_path": "m", "adapter": "runs/sft"}},
            "model.adapter",
        ),
    ],
)
def test_preference_settings_that_cannot_work_are_config_errors(override, message):
    from tuneforge.config.loading import validate_config
    from tuneforge.train.methods import check_method

    raw = {
        "model": {"name_or_path": "m"},
        "data": {"path": "p.jsonl"},
        "train": {"method": "dpo"},
        **override,
    }
    with pytest.raises(TuneforgeError, match=message):
        check_method(validate_config(raw))


@pytest.mark.parametrize(
    "split", [{"eval_fraction": 0.0}, {"eval_fraction": 0.2, "seed": 3}, {"eval_fraction": 0.5}]
)
@pytest.mark.parametrize("method", ["kto", "sft"])
def test_a_bad_row_is_named_by_its_place_in_the_file_after_the_split_shuffles(
    method, split, tiny_models, tmp_path
):
    """Found by a new user: with data.eval_fraction the rows are shuffled, and messages used to count
    rows of the shuffled split while naming the file."""
    if method == "kto":
        rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": True} for i in range(20)]
        rows[7]["label"] = "maybe"
        expected = r"rows.jsonl row 7, label: label 'maybe'"
    else:
        rows = [
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(20)
        ]
        rows[7]["messages"][0]["role"] = "human"
        expected = r"rows.jsonl row 7: role 'human' is not one of"
    config = quick_config(
        tiny_models("llama"),
        write_jsonl(tmp_path / "rows.jsonl", rows),
        data={"template": "alpaca", **split},
        train={"method": method},
    )
    with pytest.raises(TuneforgeError, match=expected):
        run_finetune(config, tmp_path / "run")


def test_pairs_share_the_tokenization_cache_and_read_back_the_same(tiny_models, tmp_path):
    from tuneforge.train.preview import preview_data

    config = config_for(tiny_models, tmp_path, clean_pairs())
    fresh, _ = preview_data(config)
    cached, _ = preview_data(config)
    assert (fresh.cache_hit, cached.cache_hit) == (False, True)
    assert cached.train.to_list() == fresh.train.to_list()
    assert cached.train_stats == fresh.train_stats
    assert [c.passed for c in cached.preflight] == [c.passed for c in fresh.preflight]


def test_pairs_mix_sources_with_their_own_columns_and_weights(tiny_models, tmp_path):
    from tuneforge.train.preview import preview_data

    first = write_jsonl(tmp_path / "a.jsonl", clean_pairs(10))
    second = write_jsonl(
        tmp_path / "b.jsonl",
        [{"q": f"remove old file {i}", "good": f"rm old{i}", "bad": f"ls old{i}"} for i in range(6)],
    )
    columns = {"prompt": "q", "chosen": "good", "rejected": "bad"}
    config = quick_config(
        tiny_models("llama"),
        first,
        data={
            "path": None,
            "mix": [{"path": str(first)}, {"path": str(second), "columns": columns, "weight": 2}],
            "template": "alpaca",
            "eval_fraction": 0.0,
            "system_prompt": "You write shell commands.",
        },
        train={"method": "dpo", "max_length": 128},
    )
    data, tokenizer = preview_data(config)
    assert data.train_stats.kept == 10 + 2 * 6
    assert data.format == "pairs" and all(c.passed for c in data.preflight if c.severity == "error")
    texts = [tokenizer.decode(ids) for ids in data.train["chosen_input_ids"]]
    assert sum("rm old" in t for t in texts) == 12 and all("You write shell commands." in t for t in texts)
    result = run_finetune(
        config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 2})}),
        tmp_path / "run",
    )
    assert result.global_step == 2
