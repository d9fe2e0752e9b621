"""Golden ids/labels for every built-in template, single- and multi-turn (with a system prompt).

Each case pins the decoded input ids and the decoded trained tokens (labels != -100), on a Llama-style
tokenizer that adds BOS and has no pad token. A change to a template or to masking shows up here.
"""

import pytest

from tuneforge.config.schema import ModelConfig
from tuneforge.data.encode import IGNORE, ChatEncoder
from tuneforge.data.templates import BUILTIN_TEMPLATES, install_chat_template
from tuneforge.model.load import load_tokenizer

SINGLE = [{"role": "user", "content": "count a.txt"}, {"role": "assistant", "content": "wc -l a.txt"}]
MULTI = [
    {"role": "system", "content": "Be brief."},
    *SINGLE,
    {"role": "user", "content": "and b?"},
    {"role": "assistant", "content": "wc -l b"},
]
TRAINED = "wc -l a.txt</s>", "wc -l a.txt</s>wc -l b</s>"
GOLDEN = {
    "alpaca": (
        "<s>### Instruction:\ncount a.txt\n\n### Response:\nwc -l a.txt</s>",
        "<s>Be brief.\n\n### Instruction:\ncount a.txt\n\n### Response:\nwc -l a.txt</s>\n\n"
        "### Instruction:\nand b?\n\n### Response:\nwc -l b</s>",
        *TRAINED,
    ),
    "chatml": (
        "<s><|im_start|>user\ncount a.txt<|im_end|>\n<|im_start|>assistant\nwc -l a.txt</s>",
        "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\ncount a.txt<|im_end|>\n"
        "<|im_start|>assistant\nwc -l a.txt</s>\n<|im_start|>user\nand b?<|im_end|>\n<|im_start|>assistant\nwc -l b</s>",
        *TRAINED,
    ),
    "llama2": (
        "<s>[INST] count a.txt [/INST] wc -l a.txt </s>",
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\ncount a.txt [/INST] wc -l a.txt </s><s>[INST] and b? [/INST] wc -l b </s>",
        " wc -l a.txt </s>",
        " wc -l a.txt </s> wc -l b </s>",
    ),
    "llama3": (
        "<s><|start_header_id|>user<|end_header_id|>\n\ncount a.txt<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nwc -l a.txt</s>",
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>"
        "\n\ncount a.txt<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nwc -l a.txt</s>"
        "<|start_header_id|>user<|end_header_id|>\n\nand b?<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
        "\n\nwc -l b</s>",
        *TRAINED,
    ),
    "mistral": (
        "<s>[INST] count a.txt [/INST] wc -l a.txt</s>",
        "<s>Be brief.\n\n[INST] count a.txt [/INST] wc -l a.txt</s>[INST] and b? [/INST] wc -l b</s>",
        " wc -l a.txt</s>",
        " wc -l a.txt</s> wc -l b</s>",
    ),
    "phi": (  # the generation prompt is "Output:", so the space before the answer is trained with it
        "<s>Instruct: count a.txt\nOutput: wc -l a.txt</s>",
        "<s>System: Be brief.\nInstruct: count a.txt\nOutput: wc -l a.txt</s>\nInstruct: and b?\nOutput: wc -l b</s>",
        " wc -l a.txt</s>",
        " wc -l a.txt</s> wc -l b</s>",
    ),
    "raw": (
        "<s>count a.txtwc -l a.txt</s>",
        "<s>Be brief.count a.txtwc -l a.txt</s>and b?wc -l b</s>",
        *TRAINED,
    ),
    "zephyr": (
        "<s><|user|>\ncount a.txt</s>\n<|assistant|>\nwc -l a.txt</s>",
        "<s><|system|>\nBe brief.</s>\n<|user|>\ncount a.txt</s>\n<|assistant|>\nwc -l a.txt</s>\n"
        "<|user|>\nand b?</s>\n<|assistant|>\nwc -l b</s>",
        *TRAINED,
    ),
}


def test_every_builtin_template_has_golden_values():
    assert set(GOLDEN) == set(BUILTIN_TEMPLATES)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_template_golden_ids_and_labels(name, tiny_models):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models("llama"))))
    install_chat_template(tokenizer, name)
    single_full, multi_full, single_trained, multi_trained = GOLDEN[name]
    for conversation, full, trained in (
        (SINGLE, single_full, single_trained),
        (MULTI, multi_full, multi_trained),
    ):
        sample = ChatEncoder(tokenizer).encode_conversation(conversation)
        assert tokenizer.decode(sample.input_ids) == full
        kept = [i for i, label in zip(sample.input_ids, sample.labels) if label != IGNORE]
        assert tokenizer.decode(kept) == trained
        assert [label for label in sample.labels if label != IGNORE] == kept, "labels are the ids, unshifted"
        assert sample.input_ids.count(tokenizer.bos_token_id) == full.count("<s>"), (
            "BOS exactly where written"
        )
