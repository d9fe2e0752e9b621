"""Eval stage: did fine-tuning help on the user's own task, by how much, and which run or checkpoint is best.

Owns the generation metrics (`metrics`: rouge-score, sacrebleu, exact match), the held-out rows and their
answer loss (`heldout`), `tuneforge eval` (`evaluate`: tuned vs base vs checkpoints), the report
(`report`), metrics during training (`scoring`), `tuneforge runs` / `compare` (`runs`) and
lm-evaluation-harness (`harness`). It prompts the model through `tuneforge.infer` and the data stage's
encoder; nothing in it renders or tokenizes prompts itself.
"""
