"""Data stage: the user's rows in, tokenized training and evaluation sets out.

Owns reading files and hub datasets (`sources`, `mix`), turning rows of any shape into conversations
(`shapes`), prompt templates (`templates`), the one prompt encoder that every training and inference path
calls (`encode`), tokenizing whole datasets with length policy and counts (`tokenize`), the tokenization
cache (`cache`), preflight checks (`preflight`), batching (`collate`) and the data summary that runs print
(`report`). It needs a tokenizer, never a model: `data` and `model` do not import each other.
"""
