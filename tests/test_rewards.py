"""GRPO rewards (grpo.rewards): the built-in kinds against eval's metrics, weights and totals, per-completion
alignment, users' own reward files and how they fail, and the config checks that run when a config loads."""

import math

import pytest

from tuneforge.config.grpo import GrpoConfig, RewardConfig, rewards_refusal
from tuneforge.config.loading import config_to_yaml, read_yaml, validate_config
from tuneforge.errors import TuneforgeError
from tuneforge.eval.metrics import compute_metrics
from tuneforge.train.rewards import build_rewards, score_completions


def score(reward: dict, completions: list[str], references: list) -> list[float]:
    """One reward's scores for completions whose rows hold `references` in the column 'reference'."""
    rows = [{"prompt": f"q{i}", "reference": ref} for i, ref in enumerate(references)]
    prompts = [row["prompt"] for row in rows]
    (built,) = build_rewards([RewardConfig(**reward)])
    return score_completions([built], prompts, completions, rows).per_reward[built.name]


def config(rewards: list[dict]):
    return validate_config(
        {"model": {"name_or_path": "m"}, "data": {"path": "rows.jsonl"}, "grpo": {"rewards": rewards}}
    )


def test_exact_match_compares_stripped_strings_as_eval_does():
    assert score({"kind": "exact_match"}, [" 42\n", "42.", "The answer"], ["42", "42", "the answer"]) == [
        1.0,
        0.0,
        0.0,
    ]
    assert score({"kind": "normalized_exact_match"}, ["The Answer!"], ["answer"]) == [1.0]


def test_any_of_several_references_counts():
    assert score({"kind": "exact_match"}, ["b", "c"], [["a", "b"], ("a", "b")]) == [1.0, 0.0]


@pytest.mark.parametrize("kind", ["chrf", "rougeL", "bleu"])
def test_overlap_metrics_are_evals_value_of_one_row_on_0_to_1(kind):
    completion = "the cat sat on a mat near the door"
    reference = "the cat sat on the mat by the door"
    (value,) = score({"kind": kind}, [completion], [reference])
    assert 0 < value < 1
    assert value == pytest.approx(compute_metrics([kind], [completion], [[reference]])[kind] / 100)
    assert score({"kind": kind}, [reference], [reference]) == [pytest.approx(1.0)]


def test_each_completion_is_scored_against_its_own_row():
    # a score shuffled between completions (reversed, shifted) would not give exactly this pattern
    completions = ["alpha", "wrong", "also wrong", "delta"]
    references = ["alpha", "beta", "gamma", "delta"]
    assert score({"kind": "exact_match"}, completions, references) == [1.0, 0.0, 0.0, 1.0]
    assert score({"kind": "exact_match"}, completions[:3], references[:3]) == [1.0, 0.0, 0.0]


def test_regex_scores_one_when_the_pattern_is_found():
    reward = {"kind": "regex", "pattern": r"^<answer>\d+</answer>$"}
    completions = ["<answer>42</answer>", "<answer>42</answer> and more", "42"]
    assert score(reward, completions, ["", "", ""]) == [1.0, 0.0, 0.0]
    assert score({"kind": "regex", "pattern": "(?i)sorry"}, ["I am SORRY", "ok"], ["", ""]) == [1.0, 0.0]


def test_length_penalises_words_beyond_the_limit_down_to_minus_one():
    completions = ["one two three", "a b c d", "a b c d e f", "a b c d e f g h", "word " * 40]
    assert score({"kind": "length", "max_words": 4}, completions, [""] * 5) == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_total_is_the_weighted_sum_and_per_reward_scores_are_unweighted():
    rewards = build_rewards(
        [
            RewardConfig(kind="exact_match", weight=2.0),
            RewardConfig(kind="regex", pattern="sorry", weight=-0.5, name="apology"),
            RewardConfig(kind="length", max_words=2, weight=1.0),
        ]
    )
    rows = [{"reference": "yes"}, {"reference": "no"}, {"reference": "no"}]
    scores = score_completions(rewards, ["p"] * 3, ["yes", "sorry no", "sorry a b c"], rows)
    assert scores.per_reward == {
        "exact_match": [1.0, 0.0, 0.0],
        "apology": [0.0, 1.0, 1.0],
        "length": [0.0, 0.0, -1.0],
    }
    assert scores.total == [2.0, -0.5, -1.5]
    assert [(r.name, r.weight, r.maximum) for r in rewards] == [
        ("exact_match", 2.0, 1.0),
        ("apology", -0.5, 1.0),
        ("length", 1.0, 0.0),
    ]


def test_a_row_without_the_reference_column_is_an_error_listing_its_columns():
    (reward,) = build_rewards([RewardConfig(kind="chrf", column="answer")])
    with pytest.raises(TuneforgeError, match=r"grpo.rewards\[0\].column: .*'answer'.*'question', 'solution'"):
        score_completions([reward], ["p"], ["c"], [{"question": "q", "solution": "s"}])
    with pytest.raises(TuneforgeError, match="a string or a list of strings"):
        score_completions([reward], ["p"], ["c"], [{"answer": 3}])


USER_FILE = """\
from math import isclose

def reward(prompts, completions, rows):
    return [float(c == row["target"]) + len(p) / 100 for p, c, row in zip(prompts, completions, rows)]

def check(value):
    if value == "bad":
        raise ValueError("cannot judge " + value)
    return 1.0

def strict(prompts, completions, rows):
    return [check(c) for c in completions]

def nothing(prompts, completions, rows):
    return [1.0]

def not_a_number(prompts, completions, rows):
    return [float("nan") if c == "x" else 0.0 for c in completions]

def text(prompts, completions, rows):
    return "1.0"

def as_array(prompts, completions, rows):
    import numpy
    return numpy.ones(len(completions), dtype="float32")
"""


def user_reward(tmp_path, function: str, text: str = USER_FILE, **extra):
    path = tmp_path / "my_rewards.py"
    path.write_text(text)
    (built,) = build_rewards([RewardConfig(kind="python", file=str(path), function=function, **extra)])
    return built, str(path)


def run(reward, completions):
    rows = [{"target": "yes"} for _ in completions]
    return score_completions([reward], ["ab"] * len(completions), completions, rows)


def test_a_users_function_gets_aligned_prompts_completions_and_rows(tmp_path):
    reward, _ = user_reward(tmp_path, "reward", weight=3.0)
    assert (reward.name, reward.maximum) == ("reward", None)
    scores = run(reward, ["yes", "no"])
    assert scores.per_reward["reward"] == [1.02, 0.02]
    assert scores.total == [pytest.approx(3.06), pytest.approx(0.06)]
    assert run(user_reward(tmp_path, "as_array")[0], ["a", "b"]).total == [1.0, 1.0]


def test_a_relative_file_is_read_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "r.py").write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    (reward,) = build_rewards([RewardConfig(kind="python", file="r.py", name="mine")])
    assert reward.name == "mine"
    assert run(reward, ["yes"]).per_reward["mine"] == [1.02]


def test_a_raising_function_is_named_with_the_line_in_the_users_file(tmp_path):
    reward, path = user_reward(tmp_path, "strict")
    with pytest.raises(TuneforgeError) as caught:
        run(reward, ["fine", "bad"])
    # line 8 raises inside the helper, deeper than line 12 that called it (isclose, imported, is not listed)
    assert str(caught.value) == (
        f"reward function {path}:8 (function strict) raised ValueError: cannot judge bad"
    )


@pytest.mark.parametrize(
    "function, completions, message",
    [
        ("nothing", ["a", "b"], "returned 1 scores for 2 completions"),
        ("not_a_number", ["a", "x"], "returned nan for completion 1: every score must be a finite number"),
        ("text", ["a"], "returned str '1.0': it must return a list of one number per completion"),
    ],
)
def test_a_wrong_answer_from_a_users_function_is_named(tmp_path, function, completions, message):
    reward, path = user_reward(tmp_path, function)
    with pytest.raises(TuneforgeError, match=rf"reward function {path} \(function {function}\) {message}"):
        run(reward, completions)


def test_a_missing_file_or_function_is_named_when_the_rewards_are_built(tmp_path):
    missing = tmp_path / "absent.py"
    with pytest.raises(TuneforgeError, match=r"grpo.rewards\[0\].file: reward file not found: .*absent.py"):
        build_rewards([RewardConfig(kind="python", file=str(missing))])
    with pytest.raises(
        TuneforgeError,
        match=r"has no function 'score'; it defines: as_array, check, not_a_number, nothing, reward",
    ):
        user_reward(tmp_path, "score")


def test_a_syntax_error_or_a_failing_import_names_the_file_and_line(tmp_path):
    with pytest.raises(TuneforgeError, match=r"my_rewards.py:2: syntax error"):
        user_reward(tmp_path, "reward", text="x = 1\ndef reward(:\n    pass\n")
    with pytest.raises(TuneforgeError, match=r"my_rewards.py:3 raised ZeroDivisionError while loading"):
        user_reward(tmp_path, "reward", text="import math\n\nx = 1 / 0\n")


def test_two_rewards_with_one_name_are_refused_naming_both(tmp_path):
    twins = [RewardConfig(kind="exact_match"), RewardConfig(kind="exact_match", column="answer")]
    with pytest.raises(TuneforgeError, match="rewards 0 and 1 are both named 'exact_match'"):
        build_rewards(twins)
    with pytest.raises(TuneforgeError, match="grpo.rewards: .*rewards 0 and 1 are both named 'exact_match'"):
        config([{"kind": "exact_match"}, {"kind": "exact_match", "column": "answer"}])
    assert len(config([{"kind": "exact_match"}, {"kind": "exact_match", "name": "em2"}]).grpo.rewards) == 2


@pytest.mark.parametrize(
    "reward, message",
    [
        ({"kind": "python"}, r"grpo.rewards.0: .*kind python needs file"),
        ({"kind": "regex"}, r"grpo.rewards.0: .*kind regex needs pattern"),
        ({"kind": "length"}, r"grpo.rewards.0: .*kind length needs max_words"),
        (
            {"kind": "regex", "pattern": "(unclosed"},
            r"grpo.rewards.0.pattern: .*not a valid regular expression",
        ),
        ({"kind": "exact_match", "pattern": "x"}, r"pattern is read only by kind regex; kind exact_match"),
        ({"kind": "regex", "pattern": "x", "file": "r.py"}, r"file is read only by kind python; kind regex"),
        ({"kind": "python", "file": "r.py", "column": "a"}, r"column is read only by kind exact_match or"),
        ({"kind": "bleu", "weight": math.inf}, r"grpo.rewards.0.weight: .*finite"),
        ({"kind": "rouge"}, r"grpo.rewards.0.kind: "),
    ],
)
def test_config_mistakes_are_errors_naming_the_key(reward, message):
    with pytest.raises(TuneforgeError, match=message):
        config([reward])


def test_a_saved_config_loads_again():
    rewards = [{"kind": "regex", "pattern": "^a"}, {"kind": "python", "file": "r.py", "function": "f"}]
    saved = config(rewards)
    assert validate_config(read_yaml(config_to_yaml(saved))) == saved


def test_grpo_needs_a_reward_that_counts():
    assert "grpo.rewards is empty" in rewards_refusal(GrpoConfig())
    zero = GrpoConfig(rewards=[RewardConfig(kind="exact_match", weight=0)])
    assert "every grpo.rewards weight is 0" in rewards_refusal(zero)
    assert rewards_refusal(GrpoConfig(rewards=[RewardConfig(kind="exact_match")])) is None


def test_the_gsm8k_examples_reward_reads_the_number_after_the_hashes():
    from pathlib import Path

    file = Path(__file__).resolve().parents[1] / "examples" / "rewards" / "gsm8k.py"
    reward = {"kind": "python", "file": str(file), "function": "correct_number"}
    reference = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n48+24 = <<48+24=72>>72\n#### 72"
    answers = ["48 + 24 = 72 clips.", "The answer is 72.0", "1,072", "I do not know", "72 or 73"]
    assert score(reward, answers, [reference] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert score(reward, ["It costs 1,250 dollars"], ["#### 1250"]) == [1.0]
