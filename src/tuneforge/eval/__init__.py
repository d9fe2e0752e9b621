"""Eval stage (to come, issue "Evaluation and reports"): held-out loss and generation metrics of a run,
base-vs-tuned comparison and reports. It prompts the model through `tuneforge.infer` and the data
stage's encoder; nothing in it renders or tokenizes prompts itself. Empty until that issue lands.
"""
