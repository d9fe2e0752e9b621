"""How many CPU threads a tuneforge process computes with: the CPU budget, decided here and nowhere else.

torch sizes its thread pool by the cores it sees, not by what this process may use or by who else is
computing. Two trainings at once with torch's default threads each run 2.5x slower in total than one
after the other on a 2-core machine, and a 2-CPU container on a 64-core host runs 64 threads. So:

- usable CPUs: this process's affinity mask, limited by the cgroup CPU quota (v2 `cpu.max`, v1
  `cpu.cfs_quota_us / cpu.cfs_period_us`) of its cgroup or any parent, when there is one;
- busy tuneforge processes: each one computing (training, generating, serving a batch) holds a file named
  by its pid in a folder every tuneforge process of this user sees (the processes `--nproc` starts and
  the studio's runs included; files of processes that died are skipped and removed);
- threads: usable // busy (at least 1), re-read while computing (`CpuShare.rebalance`, every training step
  and every served batch, at most once a second), so a run started beside another gives and takes back
  its share as the other starts and ends. Interop threads and the tokenizers' pool (RAYON_NUM_THREADS)
  get the share at process start.

TUNEFORGE_THREADS=N fixes N threads; TUNEFORGE_THREADS=torch (or OMP_NUM_THREADS set by the user) leaves
the pool as torch sized it, as tuneforge did before. bench/shared_cpu.py measures the policy.

    share = CpuShare.for_this_process()      # once, at process start (the CLI does it)
    with share.busy():                      # while computing
        share.rebalance()                   # between steps
"""

from __future__ import annotations

import fcntl
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from tuneforge.errors import TuneforgeError

OVERRIDE = "TUNEFORGE_THREADS"
# `--nproc` sets OMP_NUM_THREADS to the budget's share for its processes (torchrun would set 1 otherwise)
# and marks it as its own, so the processes still follow the budget.
LAUNCHER_MARK = "TUNEFORGE_LAUNCHER_OMP"
REBALANCE_EVERY_S = 1.0


@dataclass(frozen=True)
class CpuBudget:
    """One decision: the CPUs this process may use, how many tuneforge processes share them, the threads."""

    affinity: int  # CPUs in this process's affinity mask
    quota: float | None  # the cgroup CPU quota in CPUs; None: no quota
    busy: int  # tuneforge processes computing now, this one included
    threads: int | None  # intra-op threads; None: left as torch sized them
    source: str  # "auto", "TUNEFORGE_THREADS" or "OMP_NUM_THREADS"

    @property
    def usable(self) -> int:
        return usable_cpus(self.affinity, self.quota)

    def describe(self) -> str:
        limit = f"cgroup quota {self.quota:g}" if self.quota is not None else "no cgroup quota"
        cpus = f"{self.usable} usable CPUs (affinity {self.affinity}, {limit})"
        if self.source != "auto":
            threads = "as torch sized them" if self.threads is None else str(self.threads)
            return f"{threads} threads, set by {self.source}; {cpus}"
        processes = "process" if self.busy == 1 else "processes"
        return f"{self.threads} threads: {cpus} shared by {self.busy} busy tuneforge {processes}"

    def as_dict(self) -> dict:
        return asdict(self) | {"usable": self.usable}


def usable_cpus(affinity: int, quota: float | None) -> int:
    """A quota of 1.5 CPUs gets 1 thread that never waits for its quota, not 2 that are throttled."""
    return max(1, min(affinity, math.floor(quota))) if quota is not None else max(1, affinity)


def affinity_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def cgroup_quota(root: Path = Path("/sys/fs/cgroup"), own: Path = Path("/proc/self/cgroup")) -> float | None:
    """The tightest CPU quota of this process's cgroup and its parents, in CPUs, v2 or v1; None if none."""
    try:
        lines = own.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy, cpu.max holds "quota period" or "max period"
            quotas += [v2_quota(folder / "cpu.max") for folder in ancestors(root, path)]
        elif "cpu" in controllers.split(","):
            for mount in dict.fromkeys((root / controllers, root / "cpu", root / "cpu,cpuacct")):
                quotas += [v1_quota(folder) for folder in ancestors(mount, path)]
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and its parents up to the mount (in a container the mount is often the cgroup)."""
    parts = [p for p in path.strip("/").split("/") if p]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def v2_quota(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def decide(affinity: int, quota: float | None, busy: int, env: dict[str, str]) -> CpuBudget:
    """The budget for these facts; `env` gives the overrides (TUNEFORGE_THREADS, then OMP_NUM_THREADS)."""
    fixed = env.get(OVERRIDE, "").strip()
    if fixed:
        if fixed == "torch":
            return CpuBudget(affinity, quota, busy, None, OVERRIDE)
        if not (fixed.isascii() and fixed.isdigit()) or int(fixed) < 1:
            raise TuneforgeError(f"{OVERRIDE}={fixed!r}: give a number of threads (1 or more), or 'torch'")
        return CpuBudget(affinity, quota, busy, int(fixed), OVERRIDE)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp and omp != env.get(LAUNCHER_MARK):
        return CpuBudget(affinity, quota, busy, None, "OMP_NUM_THREADS")
    return CpuBudget(affinity, quota, busy, max(1, usable_cpus(affinity, quota) // max(1, busy)), "auto")


class BusyFolder:
    """The folder where each computing tuneforge process keeps a file named by its pid, locked (flock) for
    as long as it computes: the kernel drops the lock when the process dies, however it dies, so a file
    left behind is never counted, even when its pid is reused. A folder that cannot be used (read-only,
    another user's) counts no one else: the process then computes as if alone, and never fails for it."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or busy_folder_path()
        self._held: int | None = None  # this process's locked file

    def mark(self, pid: int) -> None:
        with suppress(OSError):
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # locked before it appears under its name, so no other process ever sees it unlocked
            staging = self.folder / f".{pid}.new"
            fd = os.open(staging, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.replace(staging, self.folder / str(pid))
            except OSError:
                os.close(fd)
                raise
            self._held = fd

    def unmark(self, pid: int) -> None:
        with suppress(OSError):
            (self.folder / str(pid)).unlink(missing_ok=True)
        if self._held is not None:
            os.close(self._held)
            self._held = None

    def others(self, pid: int) -> int:
        """Busy processes besides `pid`: files whose lock is held; unlocked ones are removed."""
        try:
            entries = [e for e in self.folder.iterdir() if e.name.isascii() and e.name.isdigit()]
        except OSError:
            return 0
        return sum(1 for entry in entries if entry.name != str(pid) and held(entry))


def held(entry: Path) -> bool:
    """Whether a process holds the file's lock; a file nobody holds is removed (its process ended)."""
    try:
        fd = os.open(entry, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also releases the shared lock just taken
    with suppress(OSError):
        entry.unlink()
    return False


def busy_folder_path() -> Path:
    """TUNEFORGE_BUSY_DIR, else a folder of this user's in the temp folder."""
    if os.environ.get("TUNEFORGE_BUSY_DIR"):
        return Path(os.environ["TUNEFORGE_BUSY_DIR"])
    try:
        return Path(tempfile.gettempdir()) / f"tuneforge-busy-{os.getuid()}"
    except FileNotFoundError:  # no usable temp folder: nowhere to meet the others
        return Path(os.devnull)


class CpuShare:
    """This process's share of the CPUs, kept current while it computes."""

    def __init__(self, affinity: int, quota: float | None, folder: BusyFolder, env: dict[str, str]):
        self.affinity, self.quota, self.folder, self.env = affinity, quota, folder, env
        self._depth, self._lock, self._checked = 0, threading.Lock(), 0.0
        self.budget = decide(affinity, quota, self.peers(), env)

    @classmethod
    def for_this_process(cls) -> CpuShare:
        return cls(affinity_count(), cgroup_quota(), BusyFolder(), dict(os.environ))

    def peers(self) -> int:
        """Busy tuneforge processes if this one computes now; `--nproc`'s siblings count from their start."""
        return max(self.folder.others(os.getpid()) + 1, int(self.env.get("LOCAL_WORLD_SIZE", "1")))

    def launcher_environment(self, nproc: int) -> dict[str, str]:
        """What `--nproc` adds to its processes' environment: each one's share of the CPUs."""
        if self.budget.source != "auto":
            return {}
        threads = decide(self.affinity, self.quota, self.folder.others(os.getpid()) + nproc, self.env).threads
        return {"OMP_NUM_THREADS": str(threads), LAUNCHER_MARK: str(threads)}

    def prepare_process(self) -> None:
        """Before torch and tokenizers start their pools: the tokenizers' pool gets this share too."""
        if self.budget.threads is not None:
            os.environ.setdefault("RAYON_NUM_THREADS", str(self.budget.threads))

    @contextmanager
    def busy(self) -> Iterator[CpuBudget]:
        """Computing: counted by the other processes, threads set for this share."""
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self.folder.mark(os.getpid())
        try:  # counted afresh at most once a second: a server enters this for every batch
            yield self.rebalance()
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self.folder.unmark(os.getpid())

    def rebalance(self, force: bool = False) -> CpuBudget:
        """Re-count the busy processes (at most once a second) and set torch's threads for this thread."""
        now = time.monotonic()
        if force or now - self._checked >= REBALANCE_EVERY_S:
            self._checked = now
            self.budget = decide(self.affinity, self.quota, self.peers(), self.env)
        if self.budget.threads is not None:  # every call: torch's setting is per thread
            set_torch_threads(self.budget.threads)
        return self.budget


def set_torch_threads(threads: int) -> None:
    import torch  # here, not at import: the CLI decides the budget before torch loads

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with suppress(RuntimeError):  # only possible once, before any inter-op work: the first call wins
        torch.set_num_interop_threads(threads)


_SHARE: dict[str, CpuShare] = {}


def cpu_share() -> CpuShare:
    """The process's one CpuShare, made on first use."""
    if "share" not in _SHARE:
        _SHARE["share"] = CpuShare.for_this_process()
    return _SHARE["share"]
