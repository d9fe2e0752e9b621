"""The generation metrics reproduce the reference values their libraries publish.

- ROUGE: google-research/rouge `rouge/rouge_scorer_test.py` (testRouge1, testRouge2,
  testRougeLNonConsecutive): score("testing one two", prediction) with rouge-score's defaults.
- BLEU and chrF: sacrebleu's README ("BLEU = 48.53", "chrF2 = 59.73") and `test/test_bleu.py`
  (test_corpus_bleu, default settings: 48.530827) on the README's three sentences and two reference sets.
"""

import pytest

from tuneforge.eval.metrics import compute_metrics, default_metrics, normalize

README_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
PER_ROW_REFS = [list(refs) for refs in zip(*README_REFS)]  # our shape: the references of each row


@pytest.mark.parametrize(
    "kind, prediction, fmeasure",
    [("rouge1", "testing", 1 / 2), ("rouge2", "testing one", 2 / 3), ("rougeL", "testing two", 4 / 5)],
)
def test_rouge_matches_rouge_scores_own_tests(kind, prediction, fmeasure):
    assert compute_metrics([kind], [prediction], [["testing one two"]])[kind] == pytest.approx(100 * fmeasure)


def test_bleu_and_chrf_match_sacrebleus_readme():
    scores = compute_metrics(["bleu", "chrf"], README_SYS, PER_ROW_REFS)
    assert scores["bleu"] == pytest.approx(48.530827, abs=1e-6)
    assert round(scores["chrf"], 2) == 59.73


def test_exact_match_and_its_normalised_form():
    predictions = ["The Dog bit the man", "it was not unexpected.", "wrong"]
    references = [["the dog bit the man."], ["It was not unexpected."], ["right"]]
    scores = compute_metrics(["exact_match", "normalized_exact_match"], predictions, references)
    assert scores == {"exact_match": 0.0, "normalized_exact_match": pytest.approx(200 / 3)}
    assert normalize("  The  Man, bit A dog! ") == "man bit dog"
    assert compute_metrics(["exact_match"], ["ls -la"], [["ls -la", "ls -l"]])["exact_match"] == 100.0


def test_defaults_follow_the_answer_length():
    assert default_metrics([["rm a.txt"], ["wc -l b"]]) == ["exact_match", "normalized_exact_match", "chrf"]
    summary = "Person one asks person two about the weather and they agree to meet later in the afternoon."
    assert default_metrics([[summary]] * 3) == ["rouge1", "rouge2", "rougeL", "bleu"]


def test_an_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metrics"):
        compute_metrics(["meteor"], ["a"], [["a"]])


def test_tool_call_metrics_compare_calls_as_json_values_over_rows_that_call():
    from tuneforge.data.tool_format import render_calls
    from tuneforge.eval.metrics import compute_metrics, default_metrics

    def calls(*made):
        return render_calls([{"name": n, "arguments": a} for n, a in made])

    references = [[calls(("f", {"a": 1, "b": "x"}))], [calls(("g", {}), ("f", {"a": 2}))], ["plain text"]]
    predictions = [
        '<tool_call>\n{"arguments": {"b": "x", "a": 1.0}, "name": "f"}\n</tool_call>',  # key order, 1.0 == 1
        calls(("f", {"a": 2}), ("g", {})),  # the right calls in the wrong order
        "something else",  # a row whose reference calls nothing is not counted
    ]
    scores = compute_metrics(["tool_call_exact_match", "tool_name_match"], predictions, references)
    assert scores == {"tool_call_exact_match": 50.0, "tool_name_match": 50.0}
    wrong_argument = [calls(("f", {"a": 1, "b": "y"})), calls(("g", {}), ("f", {"a": 2}))]
    scores = compute_metrics(["tool_call_exact_match", "tool_name_match"], wrong_argument, references[:2])
    assert scores == {"tool_call_exact_match": 50.0, "tool_name_match": 100.0}
    assert default_metrics(references)[:2] == ["tool_call_exact_match", "tool_name_match"]
    assert "tool_call_exact_match" not in default_metrics([["ls -la"]])
