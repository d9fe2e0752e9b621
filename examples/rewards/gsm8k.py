"""A numeric-answer reward for grade-school maths (openai/gsm8k), used by examples/grpo_qwen_gsm8k.yaml.

GSM8K's answers end with "#### 72": the reference number. A completion earns 1.0 when the last number it
writes is that number (commas and a trailing ".0" ignored), else 0.0. tuneforge calls it as
`correct_number(prompts, completions, rows)`; `rows[i]["reference"]` is completion i's answer column.

    python examples/rewards/gsm8k.py     # checks itself on a few cases
"""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def correct_number(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
    scores = []
    for completion, row in zip(completions, rows):
        expected = last_number(row["reference"].split("####")[-1])
        scores.append(float(expected is not None and last_number(completion) == expected))
    return scores


if __name__ == "__main__":
    rows = [{"reference": "She sold 48/2 = 24 clips in May.\n#### 72"}] * 4
    answers = ["48 + 24 = 72 clips.", "The answer is 72.0", "1,072", "I do not know"]
    assert correct_number([""] * 4, answers, rows) == [1.0, 1.0, 0.0, 0.0]
    print("ok")
