"""tuneforge studio: one local web app (Gradio) over the same stages the CLI uses, to set up, check, launch,
watch, evaluate, export and chat with a fine-tune.

    tuneforge studio                       # this folder is the workspace; runs in ./runs; http://127.0.0.1:7861
    tuneforge studio --runs runs --host 0.0.0.0 --auth me:secret

It owns no training, data, evaluation or export logic: the New run page turns its form into a `RunConfig`
(config stage) and shows what `tuneforge data` and `tuneforge plan` print (recorded as HTML); a run, an
evaluation and an export are the CLI's own commands started as child processes, so a run outlives the
studio and the terminal sees the same runs. Modules:

- `workspace`: the folder the studio may read and write; every path a user gives is checked against it.
- `form`: the New run form's fields -> a validated RunConfig and its YAML.
- `checks`: the preview: the data report, the preflight verdict and the memory plan.
- `jobs`: child processes: `tuneforge train` (detached, log in studio/logs), stop (SIGINT, as Ctrl-C),
  resume, eval and export.
- `watch`: a run's status, progress, ETA, curves and console tail, read from its directory.
- `app` (the Blocks and the launch), `new_run`, `runs_page`, `results` (evaluate, export, compare),
  `chat_page`: the pages.
"""
