"""`tuneforge train --nproc N`: this node's N processes started by torchrun's own launcher, in process.

Each process runs the same `tuneforge train` command (without --nproc) with RANK, LOCAL_RANK and
WORLD_SIZE set; rank 0 owns the run directory (tuneforge.run.processes). For several nodes, call torchrun
or `accelerate launch` yourself (README, "More than one GPU").
"""

from __future__ import annotations

import os
import sys

from tuneforge.errors import TuneforgeError


def launch_training(nproc: int, train_argv: list[str]) -> None:
    """Runs `python -m tuneforge.cli train ...` on nproc local processes and returns when all have ended."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if "WORLD_SIZE" in os.environ:
        raise TuneforgeError(
            "--nproc inside a process that torchrun or accelerate already started: drop --nproc "
            "(the launcher decides the process count)"
        )
    torchrun_argv = ["--standalone", "--nproc-per-node", str(nproc), "--module", "tuneforge.cli", "train"]
    arguments = get_args_parser().parse_args([*torchrun_argv, *train_argv])
    try:
        run(arguments)
    except ChildFailedError as failed:
        ranks = sorted(failed.failures)
        first = failed.failures[ranks[0]]
        raise SystemExit(first.exitcode if first.exitcode and first.exitcode > 0 else 1) from None
    sys.stdout.flush()
