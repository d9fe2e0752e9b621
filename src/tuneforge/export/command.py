"""`tuneforge export`'s stage as the CLI calls it: refuse what cannot work before any work (a hub upload
without a login), export and check (`exporter.export_run`), print the verdict, then upload.

    export_command(Path("runs/quickstart"), Path("exports/q"), ExportOptions(), rich.console.Console())
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from tuneforge.errors import TuneforgeError
from tuneforge.export.check import CheckResult, summary
from tuneforge.export.exporter import export_run
from tuneforge.export.hub import push_to_hub, require_token
from tuneforge.export.options import ExportOptions

if TYPE_CHECKING:
    from rich.console import Console


def export_command(
    run_dir: Path,
    out: Path,
    options: ExportOptions,
    console: Console,
    hub_repo: str | None = None,
    private: bool = False,
) -> CheckResult:
    """Export `run_dir` to `out`, printing progress and the check's verdict on `console`; with `hub_repo`
    (USER/NAME) also upload the folder, `private` if asked."""
    if private and not hub_repo:
        raise TuneforgeError("--private applies to --push-to-hub REPO; pass both")
    if hub_repo:
        require_token(hub_repo)
    result = export_run(run_dir, out, options, notice=lambda text: console.print(text, highlight=False))
    verdict = (
        "[green]check passed[/]" if result.passed else "[bold red]check FAILED (kept: --allow-mismatch)[/]"
    )
    console.print(f"{verdict}: {escape(summary(result))}", highlight=False)
    console.print(f"wrote {out} ({options.format}, {result.weights}); details in {out / 'export_check.json'}")
    if hub_repo:
        console.print(f"uploaded to {push_to_hub(out, hub_repo, private)}")
    return result
