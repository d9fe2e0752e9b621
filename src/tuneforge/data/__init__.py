"""Data stage: the user's rows in, tokenized training and evaluation sets out.

One core, one track per kind of sample. The core reads files and hub datasets (`sources`; JSON lines checked
in `jsonfile`, line-aligned prompt/completion files in `parallel`) or several sources at once (`mix`), turns
rows of any shape into conversations (`shapes`; tool calls, tool results, a row's tools and reasoning traces
in `agent`; answers read back into text, trace and calls in `tool_format`), installs the prompt template (`templates`), owns
the one prompt encoder that every training and inference path calls (`encode`), the tokenization cache
(`cache`), batching (`collate`) and the entry point `prepare_data` (`prepare`), which returns one
`PreparedData` (`prepared`) whatever the track. A track (`track`: the interface) says how its rows are read,
encoded and checked: `samples` (SFT conversations and documents, with `tokenize`, `preflight` and `report`),
`pairs/` (preference pairs and KTO rows) and `prompts` (prompts with their reference, for GRPO). It needs a
tokenizer, never a model: `data` and `model` do not import each other.
"""
