"""The run directory: where a run's artifacts live, and the rules that keep work safe.

RUN_DIR/config.yaml  manifest.json  metrics.jsonl  plots/loss.png  adapter/  checkpoints/  tensorboard/  .lock

`check_target` decides, before anything is written, whether a command may use a folder: never `/`, the
home folder, the working directory or a folder above it, never a folder of other files, and a finished
run only with --overwrite. `clear` (the --overwrite) runs only after the new run's data and model passed
their checks, so a failed --overwrite leaves the old run as it was.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.run.lock import LOCK_NAME, holder, is_locked
from tuneforge.run.manifest import manifest_problem, read_manifest

# What a run writes; --overwrite deletes these and nothing else the folder may hold.
RUN_FILES = (
    "config.yaml",
    "manifest.json",
    "metrics.jsonl",
    "plots",
    "adapter",
    ".adapter.tmp",
    "checkpoints",
    "tensorboard",
    "reference_logps.json",
)


def run_dir_for(output_dir: str | Path | None, configured: str | Path | None, name: str) -> Path:
    """Where `tuneforge train` (and the API's train) puts a run: --output-dir, else the config's run_dir,
    else runs/<the YAML's name>."""
    return Path(output_dir or configured or Path("runs") / name)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.root / "plots" / "loss.png"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def reference_logps(self) -> Path:
        """Preference runs: the starting model's log-probs of every answer, the frozen reference."""
        return self.root / "reference_logps.json"

    @property
    def rewards_plot(self) -> Path:
        return self.root / "plots" / "rewards.png"

    @property
    def eval_split(self) -> Path:
        """The held-out rows as conversations, written at the start: `tuneforge eval` scores these."""
        return self.root / "eval_split.jsonl"

    @property
    def evaluation(self) -> Path:
        """`tuneforge eval`'s results and report."""
        return self.root / "eval"

    def is_tuneforge_run(self) -> bool:
        manifest = read_manifest(self.manifest)
        return manifest.get("tool") == "tuneforge" or "tuneforge" in manifest.get("versions", {})

    def damage(self) -> str | None:
        """What is wrong with manifest.json, when it is there but cannot be read (changed by hand, or the
        disk failed); a run directory with one is still a run, but nothing can tell how far it got."""
        problem = manifest_problem(self.manifest)
        return f"{self.manifest} is damaged ({problem})" if problem else None

    def status(self) -> str:
        """finished, failed, interrupted, running or damaged; a 'running' run whose process is gone was
        interrupted."""
        if self.damage():
            return "damaged"
        status = read_manifest(self.manifest).get("status", "unknown")
        if status == "running" and not is_locked(self.root):
            return "interrupted"
        return status

    def check_target(self, *, resume: bool, overwrite: bool) -> None:
        """Refuse what would destroy or mix work; writes nothing."""
        if resume and overwrite:
            raise TuneforgeError("--resume continues a run and --overwrite deletes it: pass one of them")
        check_not_protected(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise TuneforgeError(f"{self.root} is a file, not a folder: choose another --output-dir")
        if self.root.is_dir() and is_locked(self.root):
            raise TuneforgeError(
                f"{self.root} is in use by another tuneforge process ({holder(self.root / LOCK_NAME)}). Wait for "
                "it to finish, stop it, or train into another --output-dir."
            )
        entries = [p for p in self.root.iterdir() if p.name != LOCK_NAME] if self.root.is_dir() else []
        if entries and self.damage() and not overwrite:
            raise TuneforgeError(
                f"{self.damage()}, so tuneforge cannot tell how far this run got; nothing was changed. Restore "
                "manifest.json from a copy, pass --overwrite to delete the run and train again, or choose "
                "another --output-dir."
            )
        if entries and not self.is_tuneforge_run() and not self.damage():
            raise TuneforgeError(
                f"{self.root} holds files that are not a tuneforge run (no manifest.json written by tuneforge); "
                "nothing was changed. Choose another --output-dir."
            )
        if overwrite or resume or not entries:
            return
        if self.status() == "finished":
            raise TuneforgeError(
                f"{self.root} holds a finished run; pass --overwrite to replace it or --output-dir for a new one"
            )
        raise TuneforgeError(
            f"{self.root} holds an unfinished run (status: {self.status()}); pass --resume to continue it or "
            "--overwrite to start over"
        )

    def clear(self) -> None:
        """Delete what the previous run wrote; other files in the folder are the user's and stay."""
        for name in RUN_FILES:
            entry = self.root / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()


def check_not_protected(root: Path) -> None:
    target = root.expanduser().resolve()
    cwd = Path.cwd().resolve()
    protected = {Path("/"), Path.home().resolve(), cwd, *cwd.parents}
    if target in protected:
        raise TuneforgeError(
            f"refusing to use {root} as a run directory: it is / , the home folder, the working directory or a "
            "folder above it. Choose a folder of its own, e.g. runs/NAME."
        )
