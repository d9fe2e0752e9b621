"""The export's README.md, in the hub's model-card format: YAML metadata (the format's own fields from its
`card_fields`), then what the model is, what it was trained on, how well it does against its base, and what
the export check measured.

    (folder / "README.md").write_text(model_card(run, config, FORMATS["hf"], check, license_id=None))
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from huggingface_hub.utils import HFValidationError, validate_repo_id

from tuneforge.config.schema import RunConfig
from tuneforge.export.formats import ExportFormat
from tuneforge.run.directory import RunDir
from tuneforge.run.manifest import read_manifest

SHOWN_METRICS = ("loss", "perplexity", "exact_match", "rouge1", "rouge2", "rougeL", "bleu", "chrf")


def base_license(config: RunConfig) -> str | None:
    """The license the base model's own card declares, when the base is a local folder with one."""
    card = Path(config.model.name_or_path).expanduser() / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(errors="replace")
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    return meta.get("license") if isinstance(meta, dict) else None


def metadata(config: RunConfig, export_format: ExportFormat, license_id: str | None) -> dict:
    method = "full fine-tune" if config.lora.method == "full" else "lora"
    fields = export_format.card_fields()
    hub_id = {"base_model": config.model.name_or_path} if is_hub_id(config.model.name_or_path) else {}
    return {
        **hub_id,
        "library_name": fields["library_name"],
        "license": license_id or base_license(config) or "other",
        "pipeline_tag": "text-generation",
        "tags": ["tuneforge", method, *(["qlora"] if config.quant.mode == "4bit" else []), *fields["tags"]],
    }


def is_hub_id(name: str) -> bool:
    """The hub reads base_model as a repository id: a local folder's path there is a broken link."""
    if name.startswith((".", "/", "~")) or Path(name).expanduser().exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def base_note(config: RunConfig) -> list[str]:
    name = config.model.name_or_path
    if is_hub_id(name):
        return []
    return [
        f"The base model was the local folder `{name}`, so this card names no `base_model`: add its hub id to "
        "the metadata above before publishing, if it has one.",
        "",
    ]


def results_table(run: RunDir) -> list[str]:
    results_file = run.evaluation / "results.json"
    if not results_file.is_file():
        return [
            "No `tuneforge eval` results were saved with the run; run `tuneforge eval RUN --compare-base`."
        ]
    results = json.loads(results_file.read_text())
    tuned, base = results.get("tuned") or {}, results.get("base") or {}
    names = [m for m in SHOWN_METRICS if m in tuned]
    lines = [
        f"On {results.get('rows')} held-out rows (`tuneforge eval`):",
        "",
        "| metric | base | tuned |",
        "|---|---|---|",
    ]
    for name in names:
        lines.append(f"| {name} | {fmt(base.get(name))} | {fmt(tuned.get(name))} |")
    return lines


def fmt(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(
    run: RunDir, config: RunConfig, export_format: ExportFormat, check: dict, license_id: str | None
) -> str:
    manifest = read_manifest(run.manifest)
    files = manifest.get("data_files", [])
    against = check["against_adapter_on_base"]
    lines = [
        "---",
        yaml.safe_dump(metadata(config, export_format, license_id), sort_keys=False).strip(),
        "---",
        "",
        f"# Fine-tune of {config.model.name_or_path}",
        "",
        f"Trained with tuneforge ({config.lora.method}, r={config.lora.r}, alpha={config.lora.alpha}, base "
        f"{'quantized to ' + config.quant.mode if config.quant.mode != 'none' else 'unquantized'}) for "
        f"{manifest.get('global_step')} steps, then merged into the base and exported as "
        f"`{export_format.name}`.",
        "",
        *base_note(config),
        "## Intended use",
        "",
        "The task of the training data below, prompted with the chat template saved with the model. It has not "
        "been evaluated beyond the held-out rows reported here; check its answers before relying on them.",
        "",
        "## Training data",
        "",
        "| file | sha256 | bytes |",
        "|---|---|---|",
        *[f"| {f['path']} | `{f['sha256']}` | {f['bytes']} |" for f in files],
        "",
        f"Rows: {manifest.get('rows')}, seed {manifest.get('seed')}.",
        "",
        "## Results",
        "",
        *results_table(run),
        "",
        "## Export check",
        "",
        f"The exported files, read back by plain transformers in a separate process, against the adapter on its "
        f"base on {check['rows']} held-out prompts: top-1 next-token agreement {against['top1_agreement']:.2%} "
        f"over {against['positions']} positions, max |logit diff| {against['max_abs_logit_diff']:.2e}, greedy "
        f"generations equal {against['generations_equal']}/{against['generations']}. "
        f"{'Within' if check['passed'] else 'OUTSIDE'} the tolerance for {check['weights']} weights.",
        "",
        "## Configuration",
        "",
        "```yaml",
        run.config.read_text().strip(),
        "```",
        "",
    ]
    return "\n".join(lines)
