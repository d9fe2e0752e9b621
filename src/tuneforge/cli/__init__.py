"""Command line: `tuneforge train | data | plan | generate`, and `tuneforge --version`.

The CLI is where the stages meet: it loads the whole run config and hands each stage its part.

tuneforge train examples/quickstart.yaml --set train.max_steps=50
tuneforge data examples/quickstart.yaml --n 3
tuneforge plan examples/mistral7b_qlora_chatdoctor.yaml --gpu A10G
tuneforge generate runs/quickstart --prompt "delete notes.txt"
tuneforge generate runs/quickstart --input eval.jsonl --output predictions.jsonl
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from tuneforge import __version__
from tuneforge.errors import TuneforgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune causal LMs with LoRA / QLoRA.")
console = Console()
SHOW_TRACEBACKS = {"on": False}


def version_callback(value: bool) -> None:
    if value:
        console.print(f"tuneforge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error."),
) -> None:
    """tuneforge: data -> template -> tokens -> (quantized) model + adapter -> training -> run directory."""
    SHOW_TRACEBACKS["on"] = debug
    quiet_third_party_noise()
    if rank_tag():  # under torchrun only rank 0 talks; the others report their own errors only
        console.quiet = True
        warnings.simplefilter("ignore")
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def quiet_third_party_noise() -> None:
    """Lines that tell the user nothing they can act on, printed by libraries on every command."""
    # bitsandbytes, on AVX512-BF16 CPUs: an optional kernel package it could not import.
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
        lambda record: "gemm_4bit_forward" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft calling a renamed API
    warnings.filterwarnings("ignore", message=".*clean_up_tokenization_spaces.*")


@app.command()
def train(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a key: --set train.max_steps=20 (repeatable)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the run's latest complete checkpoint."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", help="Run directory (default runs/<config name>)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing run directory first."),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Processes on this machine (one per GPU; DDP over gloo on CPUs), via torchrun.",
    ),
) -> None:
    """Fine-tune a model as the config says and write a run directory."""
    from tuneforge.config.loading import load_config
    from tuneforge.train.sft import run_finetune

    with user_errors():
        config = load_config(config_path, set_)  # a bad config fails here, before any process starts
        run_dir = output_dir or Path(config.run_dir or Path("runs") / config_path.stem)
        if nproc > 1:
            from tuneforge.cli.launch import launch_training

            flags = [*(["--resume"] if resume else []), *(["--overwrite"] if overwrite else [])]
            sets = [part for value in set_ for part in ("--set", value)]
            argv = [str(config_path), *sets, "--output-dir", str(run_dir), *flags]
            launch_training(nproc, argv, debug=SHOW_TRACEBACKS["on"])
            return
        result = run_finetune(config, run_dir, resume=resume, overwrite=overwrite, console=console)
        if result.interrupted:
            sets = [part for value in set_ for part in ("--set", value)]
            command = ["tuneforge", "train", str(config_path), *sets, "--output-dir", str(run_dir)]
            if os.environ.get("LOCAL_WORLD_SIZE", "1") == os.environ.get("WORLD_SIZE", "1") != "1":
                command += ["--nproc", os.environ["WORLD_SIZE"]]  # one machine: as --nproc started it
            if result.global_step == 0:
                advice = (
                    f"nothing was trained yet. Start again with:\n  {shlex.join([*command, '--overwrite'])}"
                )
            else:
                advice = (
                    f"a checkpoint holds the progress. Resume with:\n  {shlex.join([*command, '--resume'])}"
                )
            console.print(
                f"[bold yellow]interrupted[/] ({result.interrupted}) at step {result.global_step}; {advice}",
                highlight=False,
                soft_wrap=True,
            )


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    prompt: list[str] = typer.Option([], "--prompt", help="A user message (repeatable)."),
    input_path: Path | None = typer.Option(
        None,
        "--input",
        help="Rows in the run's training shape (its columns, prompt_format and system prompt apply), or rows "
        "with a 'prompt' field: .jsonl, .json, .csv, .parquet.",
    ),
    output_path: Path | None = typer.Option(
        None, "--output", help="Write each row plus its generation here."
    ),
    max_new_tokens: int = typer.Option(128, help="Longest generation."),
    base_only: bool = typer.Option(
        False, "--base-only", help="Use the base model without the adapter (baseline)."
    ),
    show: int = typer.Option(0, "--show", help="With --output, also print the first N rows."),
    batch_size: int = typer.Option(8, help="Prompts generated together (grouped by length)."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (with --sample)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass (with --sample)."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow the model code a run's config asks to run."
    ),
) -> None:
    """Generate with the run's model; with --input rows that hold their answer, report exact match."""
    from tuneforge.eval.metrics import exact_match
    from tuneforge.infer.generate import Decoding
    from tuneforge.infer.generate import generate as generate_texts
    from tuneforge.infer.inputs import plain_prompt, prompts_from_file
    from tuneforge.infer.load import load_run
    from tuneforge.run.files import check_writable, write_atomically

    with user_errors():
        if not prompt and not input_path:
            raise TuneforgeError("nothing to generate: pass --prompt TEXT or --input FILE")
        if output_path:
            check_writable(output_path)  # before the work, not after it
        loaded = load_run(run_dir, base_only=base_only, trust_remote_code=trust_remote_code)
        data = loaded.config.data
        rows = [plain_prompt(p, data) for p in prompt]
        rows += prompts_from_file(input_path, data, loaded.data_format) if input_path else []
        decoding = Decoding(max_new_tokens, batch_size, sample, temperature, top_p)
        texts = generate_texts(loaded, [row.messages for row in rows], decoding, console)
        if output_path:
            lines = [
                json.dumps({**row.row, "generation": text}, default=str) for row, text in zip(rows, texts)
            ]
            write_atomically(output_path, "".join(line + "\n" for line in lines))
            console.print(f"wrote {len(rows)} rows to {output_path}")
        for row, text in list(zip(rows, texts))[: show if output_path else len(rows)]:
            expected = f"  [dim](expected: {row.reference})[/]" if row.reference is not None else ""
            console.print(f"[bold]>>> {row.messages[-1]['content']}[/]\n{text}{expected}", highlight=False)
        references = [row.reference for row in rows]
        if all(reference is not None for reference in references):
            score = exact_match(texts, [[r] for r in references])
            console.print(
                f"exact match: [bold]{score:.1f}%[/] of {len(rows)} ({'base' if base_only else 'fine-tuned'})"
            )


@app.command()
def data(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    n: int = typer.Option(3, "--n", help="Rendered samples to show."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, as for train."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Show what training will see: samples, lengths, truncation, preflight checks, LoRA target matches."""
    from tuneforge.config.loading import load_config
    from tuneforge.train.preview import data_report, show_report

    with user_errors():
        config = load_config(config_path, set_)
        if as_json:
            report = data_report(config)[1]
            print(json.dumps(report, indent=2))  # no rich markup: machine-readable
        else:
            report = show_report(console, config, n)
        failures = [c["check"] for c in report["preflight"] if not c["passed"] and c["severity"] == "error"]
        if failures:  # as `tuneforge train` would stop here, so does a script that checks the exit code
            if not as_json:
                console.print(f"[bold red]preflight failed[/]: {', '.join(failures)}")
            raise typer.Exit(1)


@app.command()
def plan(
    config_path: Path = typer.Argument(..., help="YAML run config."),
    gpu: str | None = typer.Option(
        None, "--gpu", help="Plan for this GPU (see the list in --help), not this machine."
    ),
    gpus: int = typer.Option(
        1, "--gpus", min=1, help="Devices sharing the run: memory per device, for distributed.strategy."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a key, as for train."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Memory by component, the largest batch that fits, and estimated tokens/s, without downloading
    weights. With train.max_length: auto the data is tokenized first to resolve it."""
    from dataclasses import asdict

    from tuneforge.config.loading import load_config
    from tuneforge.model.plan import DEVICES, Setup, make_plan
    from tuneforge.model.report import show_plan
    from tuneforge.train.distributed import resolve_strategy
    from tuneforge.train.preview import resolved_max_length

    with user_errors():
        if gpu is not None and gpu not in DEVICES:
            raise TuneforgeError(f"--gpu {gpu!r}: choose one of {', '.join(DEVICES)}")
        config = load_config(config_path, set_)
        train = config.train
        if train.method in (
            "dpo",
            "simpo",
            "orpo",
        ):  # one forward scores chosen and rejected: 2 sequences a pair
            train = train.model_copy(update={"batch_size": 2 * train.batch_size})
            if not as_json:
                console.print(
                    f"{train.method}: planned as {train.batch_size} sequences per batch (2 per pair)"
                )
        setup = Setup(config.model, config.quant, config.lora, train)
        strategy = resolve_strategy(config.distributed, gpus)
        if strategy == "deepspeed":
            strategy = f"deepspeed-zero{config.distributed.zero_stage}"
        result = make_plan(setup, resolved_max_length(config), gpu or "cpu", gpus, strategy)
        if as_json:
            print(json.dumps(asdict(result), indent=2))
        else:
            show_plan(console, result)


@app.command("eval")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    data_path: Path | None = typer.Option(
        None,
        "--data",
        help="Rows to score instead of the run's own eval split (the run's data mapping applies).",
    ),
    metrics: list[str] = typer.Option(
        [],
        "--metrics",
        help="Override eval.metrics: exact_match, normalized_exact_match, rouge1, rouge2, rougeL, "
        "bleu, chrf (repeatable).",
    ),
    compare_base: bool = typer.Option(
        False, "--compare-base", help="Also score the base model, same prompts."
    ),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Also score every saved checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    set_: list[str] = typer.Option([], "--set", help="Override an eval key: --set eval.max_new_tokens=64."),
    lm_eval: str | None = typer.Option(
        None, "--lm-eval", help="Also run lm-evaluation-harness tasks (comma-separated) on the tuned model."
    ),
    lm_eval_include: Path | None = typer.Option(
        None, "--lm-eval-include", help="A folder of your own task YAMLs."
    ),
    lm_eval_limit: int | None = typer.Option(None, "--lm-eval-limit", help="At most N examples per task."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow the model code a run's config asks to run."
    ),
) -> None:
    """Held-out loss and generation metrics of a run; base vs tuned; per checkpoint; report in RUN_DIR/eval/."""
    from tuneforge.config.schema import METRIC_NAMES
    from tuneforge.eval.evaluate import evaluate_run, results_json, save_results
    from tuneforge.eval.report import show_evaluation, write_report
    from tuneforge.run.directory import RunDir

    with user_errors():
        unknown = [m for m in metrics if m not in METRIC_NAMES]
        if unknown:
            raise TuneforgeError(f"--metrics {unknown[0]!r}: choose from {', '.join(METRIC_NAMES)}")
        run = RunDir(run_dir)
        evaluation = evaluate_run(
            run_dir,
            data_file=data_path,
            metrics=metrics or None,
            compare_base=compare_base,
            checkpoints=checkpoints,
            trust_remote_code=trust_remote_code,
            console=None if as_json else console,
            overrides=set_,
        )
        if lm_eval:
            from tuneforge.eval.harness import run_lm_eval
            from tuneforge.infer.load import load_run

            loaded = load_run(run_dir, trust_remote_code=trust_remote_code)
            tasks = [t.strip() for t in lm_eval.split(",") if t.strip()]
            evaluation.benchmarks = run_lm_eval(loaded, tasks, include=lm_eval_include, limit=lm_eval_limit)
        save_results(evaluation, run.evaluation)
        written = write_report(evaluation, run.metrics, run.evaluation)
        if as_json:
            print(json.dumps(results_json(evaluation), indent=2))
            return
        show_evaluation(console, evaluation)
        console.print(f"report: {written[-1]}")


@app.command()
def runs(folder: Path = typer.Argument(Path("runs"), help="A folder of run directories.")) -> None:
    """A table of the runs in a folder: model, data, method, steps, held-out loss, main metric, status."""
    from tuneforge.eval.runs import find_runs, show_runs

    with user_errors():
        show_runs(console, find_runs(folder))


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="A run directory."),
    run_b: Path = typer.Argument(..., help="Another run directory."),
) -> None:
    """The config keys that differ between two runs, and their held-out figures side by side."""
    from tuneforge.eval.runs import show_compare, summarize
    from tuneforge.run.directory import RunDir

    with user_errors():
        for path in (run_a, run_b):
            if not RunDir(path).is_tuneforge_run():
                raise TuneforgeError(f"{path} is not a tuneforge run directory")
        show_compare(console, summarize(RunDir(run_a)), summarize(RunDir(run_b)))


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    out: Path = typer.Option(..., "--out", help="The folder to create (written whole, or not at all)."),
    fmt: str = typer.Option(
        "hf", "--format", help="hf (merged safetensors), gguf, or ollama (GGUF + Modelfile)."
    ),
    dtype: str = typer.Option("auto", help="hf weights: auto (the run's), float32, bfloat16 or float16."),
    quant: str = typer.Option(
        "f16", help="GGUF type: f32, f16, bf16, q8_0 (or q4_k_m etc. with llama-quantize)."
    ),
    merge_base: str = typer.Option(
        "unquantized",
        "--merge-base",
        help="Base trained in 4/8 bits: merge into the original weights (unquantized) or the dequantized ones.",
    ),
    data_path: Path | None = typer.Option(
        None, "--data", help="Check on these rows instead of the eval split."
    ),
    allow_mismatch: bool = typer.Option(
        False, "--allow-mismatch", help="Keep an export outside the check's tolerance."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in --out."),
    license_id: str | None = typer.Option(
        None, "--license", help="License id for the model card (default: the base's)."
    ),
    push_to_hub: str | None = typer.Option(
        None, "--push-to-hub", help="Also upload to this hub repo (USER/NAME)."
    ),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repo private."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow the model code a run's config asks to run."
    ),
) -> None:
    """Merge the adapter into its base and write it as hf, gguf or ollama; every export is checked against
    the adapter-on-base model (export_check.json) and described by a model card (README.md)."""
    from tuneforge.export.check import summary
    from tuneforge.export.exporter import ExportOptions, export_run
    from tuneforge.export.hub import push_to_hub as upload
    from tuneforge.export.hub import require_token

    with user_errors():
        if private and not push_to_hub:
            raise TuneforgeError("--private applies to --push-to-hub REPO; pass both")
        if push_to_hub:
            require_token(push_to_hub)
        options = ExportOptions(
            format=fmt,
            dtype=dtype,
            quant=quant,
            merge_base=merge_base,
            data_file=data_path,
            allow_mismatch=allow_mismatch,
            overwrite=overwrite,
            license=license_id,
            trust_remote_code=trust_remote_code,
        )
        result = export_run(run_dir, out, options, notice=lambda text: console.print(text, highlight=False))
        verdict = (
            "[green]check passed[/]"
            if result.passed
            else "[bold red]check FAILED (kept: --allow-mismatch)[/]"
        )
        console.print(f"{verdict}: {escape(summary(result))}", highlight=False)
        console.print(f"wrote {out} ({fmt}, {result.weights}); details in {out / 'export_check.json'}")
        if push_to_hub:
            console.print(f"uploaded to {upload(out, push_to_hub, private)}")


def rank_tag() -> str:
    """Which process failed, when several train together (torchrun sets RANK)."""
    rank = os.environ.get("RANK")
    return f" (process {rank})" if rank not in (None, "0") else ""


def errors() -> Console:
    return Console(stderr=True) if console.quiet else console


class user_errors:  # noqa: N801 - used as a context manager, reads like a statement
    """Any error becomes one red message and a non-zero exit, never a traceback (`--debug` shows it):
    2 for problems the user can fix (TuneforgeError), 1 for anything unexpected, 130 for Ctrl-C."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or issubclass(exc_type, (typer.Exit, SystemExit)) or SHOW_TRACEBACKS["on"]:
            return False
        if issubclass(exc_type, TuneforgeError):
            errors().print(
                f"[bold red]error:[/]{rank_tag()} {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2)
        if issubclass(exc_type, KeyboardInterrupt):
            console.print("[bold yellow]interrupted[/]")
            raise typer.Exit(130)
        errors().print(
            f"[bold red]error:[/]{rank_tag()} {exc_type.__name__}: {escape(str(exc))}\nThis was not expected: rerun with "
            "`tuneforge --debug ...` for the traceback, and report it.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


# Commands that use a trained model (chat, app, serve) live in their own module; importing it registers them.
from tuneforge.cli import use  # noqa: E402, F401
