"""`tuneforge train --nproc N`: this node's N processes started by torchrun's own launcher, in process.

Each process runs the same `tuneforge train` command (without --nproc) with RANK, LOCAL_RANK and
WORLD_SIZE set; rank 0 owns the run directory (tuneforge.run.processes). For several nodes, call torchrun
or `accelerate launch` yourself (docs/scaling-out.md, "More than one GPU").
"""

from __future__ import annotations

import json
import os
import sys

from tuneforge.errors import TuneforgeError
from tuneforge.run.cpu import cpu_share
from tuneforge.run.manifest import LAUNCH_COMMAND

# How long the workers get, after Ctrl-C or SIGTERM, to finish their step and write a checkpoint before
# torchrun kills them (its default, 30 s, is shorter than one 7B step and save).
SHUTDOWN_TIMEOUT_S = 600


def launch_training(nproc: int, train_argv: list[str], debug: bool = False) -> None:
    """Runs `python -m tuneforge.cli train ...` on nproc local processes and returns when all have ended.
    Their exit code becomes this process's; a signal stops them cleanly (each writes its checkpoint)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if "WORLD_SIZE" in os.environ:
        raise TuneforgeError(
            "--nproc inside a process that torchrun or accelerate already started: drop --nproc "
            "(the launcher decides the process count)"
        )
    torchrun_argv = [
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "--shutdown-timeout",
        str(SHUTDOWN_TIMEOUT_S),
    ]
    command = ["--module", "tuneforge.cli", *(["--debug"] if debug else []), "train"]
    arguments = get_args_parser().parse_args([*torchrun_argv, *command, *train_argv])
    os.environ[LAUNCH_COMMAND] = json.dumps(sys.argv)  # what the manifest records, in every process
    os.environ.update(cpu_share().launcher_environment(nproc))
    try:
        run(arguments)
    except ChildFailedError as failed:  # the workers printed their own errors
        first = failed.failures[min(failed.failures)]
        raise SystemExit(first.exitcode if first.exitcode and first.exitcode > 0 else 1) from None
    except SignalException:  # forwarded to the workers, which stopped at a checkpoint and said how to resume
        raise SystemExit(130) from None
