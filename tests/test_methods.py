"""The method registry: names, typos, refusals and sections a run's method does not read."""

from __future__ import annotations

import pytest

from tuneforge.config.loading import validate_config
from tuneforge.errors import TuneforgeError
from tuneforge.train.methods import METHODS, check_method, recipe_for, unread_sections


def config(**sections):
    return validate_config({"model": {"name_or_path": "m"}, "data": {"path": "rows.jsonl"}, **sections})


def test_a_misspelled_method_names_the_closest_one():
    with pytest.raises(TuneforgeError, match=r"train.method 'dop' .*did you mean 'dpo'"):
        check_method(config(train={"method": "dop"}))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_accepts_the_defaults(name):
    # GRPO has no default reward: what it learns from is the user's to say (refused below)
    own = {"grpo": {"rewards": [{"kind": "exact_match"}]}} if name == "grpo" else {}
    check_method(config(train={"method": name}, **own))
    assert recipe_for(name).name == name


def test_grpo_without_a_reward_is_refused_naming_the_key():
    with pytest.raises(TuneforgeError, match=r"grpo.rewards is empty"):
        check_method(config(train={"method": "grpo"}))


def test_pair_methods_cost_two_sequences_a_row_and_the_others_one():
    assert {name: recipe.sequences_per_row for name, recipe in METHODS.items()} == {
        "sft": 1,
        "dpo": 2,
        "simpo": 2,
        "orpo": 2,
        "kto": 1,
        "grpo": 1,  # a prompt row; its completions are counted by the GRPO step
    }


def test_another_methods_section_is_noted_not_silently_ignored():
    assert unread_sections(config(preference={"beta": 0.2})) == ["preference"]
    assert unread_sections(config(train={"method": "dpo"}, preference={"beta": 0.2})) == []
    assert unread_sections(config()) == []
