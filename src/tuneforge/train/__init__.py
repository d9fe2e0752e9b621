"""Train stage: a whole run config in, a finished run directory out.

`run` is the method-agnostic driver (run directory, lock, manifest, resume, signals, processes, final
evaluation, reports). Each `train.method` is a `Recipe` (`recipe`: the interface) registered by name in
`methods`, the one place that maps a method to its code: `sft` (supervised), `preference` (dpo, simpo, orpo,
kto, with `preference_trainer` and `preference_loss`) and `grpo` (with `grpo_trainer`, `grpo_rollout`,
`grpo_loss`, `grpo_report`, `starting_weights` (the KL reference of a continued SFT run) and the user's
`rewards`). Recipes build from `builders` (model, data per machine, Trainer arguments, callbacks) and
`trainer` (the transformers Trainer, packing, the selective loss). `preview` is `tuneforge data`, `planning`
is `tuneforge plan`; both ask the recipe. Recipes and the CLI are the only code that sees the whole run
config.
"""
