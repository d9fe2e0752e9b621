"""Run stage: the run directory and the files in it.

Owns the directory layout and the rules that keep finished work safe (`directory`), manifest.json
(`manifest`), metrics.jsonl, the one place it is written, read and trimmed on resume (`metrics`), the
loss plot (`plots`), and what a full disk left intact (`space`). It knows nothing about models or data.
"""
