"""Train stage: the supervised fine-tuning recipe.

Owns `run_finetune` (a whole run config in, a finished run directory out, reading top to bottom), the
transformers Trainer it assembles (arguments, collator, packing), its callbacks, and `tuneforge data`'s
preview, which combines what the data and model stages report. A recipe sees the whole run config.
"""
