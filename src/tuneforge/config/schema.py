"""The run configuration: one pydantic model per pipeline stage, validated strictly.

A YAML file has the sections below; any key can be overridden on the command line with
`--set section.key=value`. Unknown keys are errors that name the closest valid key.

    tuneforge train examples/quickstart.yaml --set train.max_steps=20 --set lora.r=8
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.config.columns import ColumnsConfig, Shape, SourceConfig
from tuneforge.config.distributed import DistributedConfig
from tuneforge.config.grpo import GrpoConfig
from tuneforge.config.preference import PreferenceConfig
from tuneforge.config.preflight import PreflightConfig
from tuneforge.config.section import Section
from tuneforge.config.serve import ServeConfig

DType = Literal["auto", "float32", "bfloat16", "float16"]
MetricName = Literal["exact_match", "normalized_exact_match", "rouge1", "rouge2", "rougeL", "bleu", "chrf",
                     "tool_call_exact_match", "tool_name_match"]  # fmt: skip
METRIC_NAMES: tuple[str, ...] = MetricName.__args__
BUILTIN_TEMPLATE_NAMES = ("alpaca", "chatml", "mistral", "llama2", "llama3", "phi", "zephyr", "raw")


class ModelConfig(Section):
    name_or_path: str = Field(
        description="Hub id (e.g. mistralai/Mistral-7B-v0.1), a local model folder, or a .gguf file."
    )
    gguf_file: str | None = Field(
        None,
        description="A GGUF file inside name_or_path to use as the base (dequantized to the compute dtype); "
        "set for you when name_or_path is a .gguf file.",
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit; pin it for reproducible runs.")
    dtype: DType = Field(
        "auto",
        description="Weights dtype. auto: bfloat16 on GPUs that support it, float16 on others, float32 on CPU.",
    )
    trust_remote_code: bool = Field(
        False, description="Run modelling code shipped with the checkpoint. Off by default."
    )
    allow_pickle: bool = Field(
        False,
        description="Load weights stored only as pickle (pytorch_model.bin). Pickle files can run code when "
        "loaded: enable only for files you trust, or convert them to safetensors.",
    )

    @model_validator(mode="after")
    def _gguf_path(self) -> ModelConfig:
        if self.gguf_file is None and self.name_or_path.lower().endswith(".gguf"):
            path = self.name_or_path.replace("\\", "/")
            folder, _, name = path.rpartition("/")
            object.__setattr__(self, "name_or_path", folder or ".")
            object.__setattr__(self, "gguf_file", name)
        return self

    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="Attention kernel; auto lets transformers pick (SDPA where available)."
    )
    adapter: str | None = Field(
        None,
        description="Start from a finished LoRA run (its folder, or its adapter/ folder) on this base: its "
        "adapter is trained further and its tokenizer and chat template are used (the lora section is not). "
        "For preference tuning the frozen starting model is the reference.",
    )


class QuantConfig(Section):
    mode: Literal["none", "4bit", "8bit"] = Field(
        "none", description="Load the base weights quantized (QLoRA)."
    )
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type; nf4 is the QLoRA paper's choice."
    )
    double_quant: bool = Field(
        True, description="Quantize the quantization constants too (saves ~0.4 bit/param)."
    )
    compute_dtype: DType = Field("auto", description="dtype of the 4-bit matmuls; auto follows model.dtype.")


class LoraConfig(Section):
    method: Literal["lora", "full"] = Field(
        "lora", description="lora trains an adapter; full trains every weight."
    )
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(
        32, gt=0, description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rslora)."
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear",
        description="Module names to adapt, matched on the last name part (q_proj, lm_head, ...), or all-linear "
        "for every linear layer except the output head. A name that matches nothing is an error.",
    )
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full and saved with the adapter (e.g. embed_tokens).",
    )
    dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")


class DataConfig(Section):
    path: str | None = Field(
        None, description="A .json/.jsonl/.csv/.tsv/.parquet file, a folder saved by datasets, or a hub id."
    )
    completion_path: str | None = Field(
        None,
        description="Line-aligned parallel files (translation, NL-to-code): a text file whose line N is the "
        "completion of line N of path, which is then read as one prompt per line. Gives prompt/completion "
        "rows; the line counts must match.",
    )
    mix: list[SourceConfig] = Field(
        default_factory=list,
        description="Several sources, each with its own shape and weight (instead of path).",
    )
    hub_config: str | None = Field(None, description="Hub dataset configuration name, if it has several.")
    split: str = Field("train", description="Split to read from a hub dataset or a saved DatasetDict.")
    format: Shape = Field(
        "auto",
        description="Row shape; auto detects messages, sharegpt, alpaca, prompt/completion, then text columns.",
    )
    columns: ColumnsConfig = Field(
        default_factory=ColumnsConfig, description="Your column names for each shape."
    )
    prompt_format: str | None = Field(
        None,
        description="Python format string that builds the prompt from any columns, e.g. "
        "'Summarize this dialogue:\\n{dialogue}'. Overrides the prompt column.",
    )
    system_prompt: str | None = Field(None, description="System message put before every conversation.")
    template: str = Field(
        "auto",
        description="Prompt template: auto uses the tokenizer's chat template, else alpaca. One of "
        f"{', '.join(BUILTIN_TEMPLATE_NAMES)}, or a path to a .jinja file.",
    )
    train_on: Literal["completion", "final_turn", "all"] = Field(
        "completion",
        description="completion: loss on every assistant turn (its text, tool calls, reasoning trace and EOS); "
        "final_turn: on the last assistant turn only, earlier turns being prompt (for templates that drop "
        "earlier turns' reasoning, as Qwen3's); all: on every token.",
    )
    dedupe: bool = Field(False, description="Drop exact duplicate rows before the train/eval split.")
    too_long: Literal["truncate", "drop"] = Field(
        "truncate", description="Samples longer than train.max_length: cut at the end, or leave out."
    )
    min_tokens: int = Field(0, ge=0, description="Leave out samples shorter than this many tokens.")
    cache: bool = Field(
        True,
        description="Reuse tokenized data when data, tokenizer, template, max_length and mapping are unchanged.",
    )
    preflight: PreflightConfig = Field(
        default_factory=PreflightConfig,
        description="Checks run before training; each can be error, warn or off.",
    )
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Held-out fraction when no eval_path is given.")
    eval_path: str | None = Field(None, description="Separate evaluation file (same shape as path).")
    eval_completion_path: str | None = Field(
        None, description="The completions of eval_path, line for line, as completion_path is for path."
    )
    max_samples: int | None = Field(
        None,
        ge=1,
        description="Use a seeded random sample of this many rows of data.path, drawn before the held-out "
        "split (eval_fraction takes its share of them; with eval_path all of them train).",
    )
    seed: int = Field(42, description="Seed for sampling and the train/eval split.")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if bool(self.path) == bool(self.mix):
            raise ValueError("set exactly one of data.path (one source) or data.mix (several sources)")
        if self.completion_path and self.mix:
            raise ValueError("data.completion_path goes with data.path; in data.mix give each source its own")
        if self.eval_completion_path and not self.eval_path:
            raise ValueError("data.eval_completion_path needs data.eval_path (its prompts, line for line)")
        return self

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        if value == "auto" or value in BUILTIN_TEMPLATE_NAMES or value.endswith((".jinja", ".j2")):
            return value
        raise ValueError(
            f"unknown template {value!r}; use auto, one of {', '.join(BUILTIN_TEMPLATE_NAMES)}, or a .jinja file"
        )


class TrainConfig(Section):
    method: str = Field(
        "sft",
        description="The training method, a name in the method registry (tuneforge/train/methods.py). sft: "
        "supervised fine-tuning on answers. dpo: preference pairs against a frozen reference (the starting "
        "model). simpo and orpo: pairs without a reference. kto: single answers marked desirable or not "
        "(settings in the preference section). grpo: sampled answers scored by your rewards (the grpo "
        "section). Options a method cannot work with are refused before loading.",
    )
    epochs: float = Field(
        1.0, gt=0, description="Passes over the training data (ignored when max_steps is set)."
    )
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    scheduler: Literal[
        "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"
    ] = Field("cosine", description="Learning-rate schedule after warmup.")
    warmup: float = Field(
        0.03, ge=0, description="Warmup: a fraction of all steps when < 1, else a number of steps."
    )
    batch_size: int = Field(4, ge=1, description="Sequences per device per forward pass.")
    eval_batch_size: int | None = Field(
        None, ge=1, description="Evaluation batch size; defaults to batch_size."
    )
    grad_accumulation: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (slower).")
    optimizer: Literal[
        "adamw_torch",
        "adamw_torch_fused",
        "paged_adamw_8bit",
        "paged_adamw_32bit",
        "adamw_8bit",
        "adafactor",
        "sgd",
    ] = Field("adamw_torch", description="Optimizer; paged_adamw_8bit is the QLoRA notebooks' choice.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    max_length: Literal["auto"] | int = Field(
        "auto",
        description="Longest tokenized sample; longer ones are cut at the end (or dropped, data.too_long). "
        "auto: the smallest multiple of 64 that covers 99% of the training samples, capped at the model's "
        "context length; the number chosen is shown at the start of the run.",
    )
    group_by_length: bool = Field(
        True, description="Batch samples of similar length together (less padding)."
    )
    packing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Padding-free packing: a batch's samples are concatenated into one row and kept apart by "
        "position ids (no padding, no cross-sample attention). auto: on with CUDA, off on CPU (measured slower).",
    )
    liger: Literal["auto", "off"] = Field(
        "auto",
        description="Liger kernels (RMSNorm, SwiGLU, RoPE, fused linear cross-entropy): auto = with CUDA when installed.",
    )
    torch_compile: bool = Field(False, description="torch.compile the model (GPU; first steps are slower).")
    loss: Literal["selective", "full_logits"] = Field(
        "selective",
        description="selective: the output head and cross-entropy run only on trained positions, in chunks, so "
        "full [tokens, vocab] logits never exist (same loss and gradients; Llama, Mistral, Qwen2/3, Phi and "
        "GPT-2 families). full_logits: the model's own forward and loss (the reference path).",
    )
    eval_steps: int = Field(50, ge=1, description="Evaluate every N optimizer steps.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps.")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints.")
    logging_steps: int = Field(10, ge=1, description="Log training loss every N steps.")
    eval_before_training: bool = Field(
        True, description="Measure held-out loss before the first step (baseline)."
    )
    best_metric: Literal["loss"] | MetricName | None = Field(
        None,
        description="Track the best checkpoint by held-out loss or a generation metric (needs "
        "eval.during_training); it is never rotated away.",
    )
    keep_best: bool = Field(
        False,
        description="Make the final adapter the best checkpoint's, not the last step's (needs best_metric).",
    )
    seed: int = Field(42, description="Seed for initialisation, dropout and data order.")

    @field_validator("max_length")
    @classmethod
    def _long_enough(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 8:
            raise ValueError("must be auto or at least 8 tokens")
        return value


class EvalConfig(Section):
    metrics: Literal["auto"] | list[MetricName] = Field(
        "auto",
        description="Generation metrics (0-100). auto: exact_match, normalized_exact_match and chrf when the "
        "answers are short (median of at most 10 words), else rouge1, rouge2, rougeL and bleu, led by "
        "tool_call_exact_match and tool_name_match when answers call tools; none for plain-text data.",
    )
    max_new_tokens: int = Field(128, ge=1, description="Longest generated answer.")
    batch_size: int = Field(8, ge=1, description="Prompts generated together (grouped by length).")
    max_rows: int | None = Field(None, ge=1, description="Score only the first N held-out rows (speed).")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding (greedy is reproducible).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (do_sample only).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (do_sample only).")
    seed: int = Field(42, description="Seed for sampling.")
    during_training: bool = Field(
        False,
        description="Also generate on a fixed sample of held-out rows at every evaluation and log the metrics "
        "beside the losses (costs a generation pass; off by default, slow on CPU).",
    )
    sample_size: int = Field(32, ge=1, description="Held-out rows generated during training.")
    report_samples: int = Field(10, ge=0, description="Side-by-side samples shown in the report.")


class LogConfig(Section):
    tensorboard: bool = Field(True, description="Write TensorBoard events to RUN_DIR/tensorboard.")
    report_to: list[Literal["wandb", "mlflow", "trackio", "comet_ml"]] = Field(
        default_factory=list, description="Extra trackers, each installed and configured by you."
    )


class RunConfig(Section):
    model: ModelConfig
    quant: QuantConfig = Field(default_factory=QuantConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    run_dir: str | None = Field(
        None, description="Where the run is written; default runs/<config file name>."
    )

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.quant.mode != "none" and self.model.gguf_file is not None:
            raise ValueError(
                f"quant.mode={self.quant.mode} with model.gguf_file: a GGUF base is dequantized to the compute "
                "dtype when it loads; quantize it again with bitsandbytes from its original weights instead"
            )
        if self.quant.mode != "none" and self.lora.method == "full":
            raise ValueError(
                f"quant.mode={self.quant.mode} needs lora.method=lora: quantized weights cannot be trained in full"
            )
        train = self.train
        if train.keep_best and train.best_metric is None:
            raise ValueError("train.keep_best needs train.best_metric (loss, or a generation metric)")
        if train.best_metric not in (None, "loss") and not self.eval.during_training:
            raise ValueError(f"train.best_metric={train.best_metric} needs eval.during_training: true")
        if train.best_metric is not None and train.save_steps % train.eval_steps:
            raise ValueError(
                f"train.best_metric compares evaluations at checkpoints: train.save_steps ({train.save_steps}) "
                f"must be a multiple of train.eval_steps ({train.eval_steps})"
            )
        if self.distributed.strategy == "fsdp" and self.quant.mode == "8bit":
            raise ValueError(
                "distributed.strategy=fsdp with quant.mode=8bit: FSDP cannot shard bitsandbytes 8-bit weights. "
                "Use quant.mode=4bit (QLoRA with FSDP), or strategy ddp or deepspeed"
            )
        sharded = self.distributed.strategy == "fsdp" or (
            self.distributed.strategy == "deepspeed" and self.distributed.zero_stage == 3
        )
        if sharded and self.eval.during_training:
            raise ValueError(
                "eval.during_training generates text, which needs whole weights: with weights sharded "
                "(distributed.strategy fsdp, or deepspeed with zero_stage 3) turn it off and score the "
                "finished run with tuneforge eval"
            )
        if self.model.adapter is not None and self.lora.method == "full":
            raise ValueError("model.adapter continues a LoRA adapter: it needs lora.method=lora")
        return self
