"""Run stage: the run directory and the files in it, and the process that works in it.

Owns the directory layout and the rules that keep finished work safe (`directory`), the one-process lock
(`lock`), sealed checkpoints (`checkpoints`), manifest.json (`manifest`), metrics.jsonl, the one place it
is written, read and trimmed on resume (`metrics`), the loss plot (`plots`), output files written
atomically (`files`), what a full disk left intact (`space`), which process this is among several
(`processes`), and how many CPU threads it computes with (`cpu`, the CPU budget). It knows nothing about
models or data.
"""
