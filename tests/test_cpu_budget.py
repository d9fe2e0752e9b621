"""The CPU budget (run/cpu.py): usable CPUs from the affinity mask and the cgroup quota (v1 and v2 files
given as fixtures), threads shared among the busy tuneforge processes (`--nproc`'s siblings counted from
their start), the overrides, and a real training's start line and manifest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tuneforge.cli import app
from tuneforge.errors import TuneforgeError
from tuneforge.run import cpu
from tuneforge.run.cpu import BusyFolder, CpuShare, cgroup_quota, decide, usable_cpus


def cgroup_v2(root: Path, path: str, limits: dict[str, str]) -> Path:
    """A cgroup v2 tree: /proc/self/cgroup says "0::path"; `limits` maps a folder to its cpu.max."""
    for folder, value in limits.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "cpu.max").write_text(value + "\n")
    own = root / "self_cgroup"
    own.write_text(f"0::{path}\n")
    return own


def test_v2_quota_is_the_tightest_of_the_cgroup_and_its_parents(tmp_path):
    own = cgroup_v2(
        tmp_path / "fs",
        "/kubepods/pod1/box",
        {".": "max 100000", "kubepods": "800000 100000", "kubepods/pod1/box": "250000 100000"},
    )
    assert cgroup_quota(tmp_path / "fs", own) == 2.5
    own = cgroup_v2(tmp_path / "fs2", "/a", {".": "max 100000", "a": "max 100000"})
    assert cgroup_quota(tmp_path / "fs2", own) is None


def test_v2_inside_a_container_reads_the_mount_itself(tmp_path):
    # a cgroup namespace: /proc/self/cgroup says "/", the container's limit is at the mount's top
    own = cgroup_v2(tmp_path / "fs", "/", {".": "200000 100000"})
    assert cgroup_quota(tmp_path / "fs", own) == 2.0


def test_v1_quota(tmp_path):
    box = tmp_path / "fs" / "cpu,cpuacct" / "docker" / "abc"
    box.mkdir(parents=True)
    (box / "cpu.cfs_quota_us").write_text("150000\n")
    (box / "cpu.cfs_period_us").write_text("100000\n")
    own = tmp_path / "self_cgroup"
    own.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert cgroup_quota(tmp_path / "fs", own) == 1.5
    (box / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no limit"
    assert cgroup_quota(tmp_path / "fs", own) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cgroup_quota(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("affinity", "quota", "usable"),
    [(64, 2.0, 2), (64, 1.5, 1), (64, 0.5, 1), (4, None, 4), (4, 16.0, 4), (1, None, 1)],
)
def test_usable_cpus_are_the_affinity_limited_by_the_quota(affinity, quota, usable):
    assert usable_cpus(affinity, quota) == usable


def test_threads_are_the_usable_cpus_shared_by_the_busy_processes():
    assert decide(64, 2.0, 1, {}).threads == 2  # a 2-CPU container on a 64-core host: 2, not 64
    assert decide(2, None, 2, {}).threads == 1
    assert decide(16, None, 3, {}).threads == 5
    assert decide(2, None, 5, {}).threads == 1  # never 0


def test_overrides():
    assert decide(2, None, 2, {"TUNEFORGE_THREADS": "3"}).threads == 3
    torch_picks = decide(2, None, 2, {"TUNEFORGE_THREADS": "torch"})
    assert torch_picks.threads is None and "as torch sized them" in torch_picks.describe()
    user_omp = decide(2, None, 2, {"OMP_NUM_THREADS": "2"})
    assert user_omp.threads is None and user_omp.source == "OMP_NUM_THREADS"
    with pytest.raises(TuneforgeError, match="TUNEFORGE_THREADS='two'"):
        decide(2, None, 1, {"TUNEFORGE_THREADS": "two"})


def busy_elsewhere(folder: Path) -> subprocess.Popen:
    """Another process that marks itself busy in `folder` and stays."""
    script = (
        "import os, sys, time; from pathlib import Path; from tuneforge.run.cpu import BusyFolder; "
        "BusyFolder(Path(sys.argv[1])).mark(os.getpid()); print('ready', flush=True); time.sleep(60)"
    )
    other = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "ready"
    return other


def test_busy_processes_share_and_dead_ones_do_not_count(tmp_path):
    folder = BusyFolder(tmp_path / "busy")
    threads = torch.get_num_threads()
    other = busy_elsewhere(tmp_path / "busy")
    try:
        share = CpuShare(4, None, folder, {})
        assert share.budget.busy == 2 and share.budget.threads == 2  # the other one and this one
        with share.busy() as budget:
            assert (tmp_path / "busy" / str(os.getpid())).exists()
            assert budget.threads == 2 and torch.get_num_threads() == 2
        assert not (tmp_path / "busy" / str(os.getpid())).exists()  # no longer counted by the others
    finally:
        other.kill()
        other.wait()
        torch.set_num_threads(threads)
    assert folder.others(os.getpid()) == 0  # its file stayed, its lock went with it: removed
    assert not (tmp_path / "busy" / str(other.pid)).exists()
    assert CpuShare(4, None, folder, {}).budget.threads == 4


def test_a_file_left_behind_does_not_count_even_when_its_pid_is_alive(tmp_path):
    # killed with SIGKILL, its pid since reused by some other process: the file is there, nobody holds it
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / str(os.getppid())).touch()
    assert BusyFolder(tmp_path / "busy").others(os.getpid()) == 0
    assert not (tmp_path / "busy" / str(os.getppid())).exists()


def test_a_folder_that_cannot_be_used_counts_no_one_and_fails_nothing(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    share = CpuShare(2, None, BusyFolder(blocked / "busy"), {})
    threads = torch.get_num_threads()
    try:
        with share.busy() as budget:
            assert budget.busy == 1 and budget.threads == 2
    finally:
        torch.set_num_threads(threads)


def test_nproc_siblings_count_before_they_are_busy(tmp_path):
    # torchrun starts `--nproc 2`'s processes together and sets LOCAL_WORLD_SIZE: each takes half at once
    share = CpuShare(2, None, BusyFolder(tmp_path / "busy"), {"LOCAL_WORLD_SIZE": "2"})
    assert share.budget.busy == 2 and share.budget.threads == 1


def test_nproc_gives_its_processes_their_share_not_torchruns_one_thread(tmp_path):
    launcher = CpuShare(16, None, BusyFolder(tmp_path / "busy"), {})
    env = launcher.launcher_environment(2)
    assert env["OMP_NUM_THREADS"] == "8"  # torchrun sets 1 when OMP_NUM_THREADS is not set
    worker = CpuShare(16, None, BusyFolder(tmp_path / "busy"), {**env, "LOCAL_WORLD_SIZE": "2"})
    assert worker.budget.source == "auto" and worker.budget.threads == 8
    user = CpuShare(16, None, BusyFolder(tmp_path / "busy"), {"OMP_NUM_THREADS": "3"})
    assert user.launcher_environment(2) == {}  # the user's own setting is left alone


def test_a_training_shows_its_budget_in_the_start_line_and_manifest(
    tiny_models, demo_files, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TUNEFORGE_BUSY_DIR", str(tmp_path / "busy"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TUNEFORGE_THREADS", raising=False)
    monkeypatch.setattr(cpu, "_SHARE", {})
    monkeypatch.setenv(
        "RAYON_NUM_THREADS", "1"
    )  # restored after the test: the CLI sets it once per process  # decided afresh, as at a process start, from this environment
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model: {{name_or_path: {tiny_models('llama')}}}\ndata: {{path: {demo_files[0]}}}\n"
        "train: {max_steps: 2, batch_size: 2, max_length: 64}\n"
    )
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "run")])
    finally:  # the budget set this process's threads; the suite's other tests keep the worker's own
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    printed = result.output + capsys.readouterr().out  # the CLI's console may hold the real stdout
    line = re.search(
        r"cpu: (\d+) threads: (\d+) usable CPUs .* shared by (\d+) busy tuneforge process", printed
    )
    assert line, printed
    budget = json.loads((tmp_path / "run" / "manifest.json").read_text())["hardware"]["cpu_budget"]
    assert budget["source"] == "auto" and budget["threads"] == budget["usable"] // budget["busy"]
    assert int(line[1]) == budget["usable"] // int(line[3]) and int(line[2]) == budget["usable"]


def test_the_affinity_mask_limits_the_usable_cpus(tmp_path):
    """A process pinned to one CPU (as `taskset -c 0` or a container's cpuset does) gets one thread."""
    script = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from tuneforge.run.cpu import CpuShare; b = CpuShare.for_this_process().budget; "
        "print(b.affinity, b.threads)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "TUNEFORGE_THREADS")}
    env["TUNEFORGE_BUSY_DIR"] = str(tmp_path / "busy")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"], out.stdout + out.stderr


def test_a_bad_override_is_one_clear_error_not_a_traceback(monkeypatch):
    monkeypatch.setenv("TUNEFORGE_THREADS", "two")
    monkeypatch.setattr(cpu, "_SHARE", {})
    result = CliRunner().invoke(app, ["runs"])
    assert result.exit_code == 2, result.output
    assert "TUNEFORGE_THREADS='two': give a number of threads" in result.output
    assert "Traceback" not in result.output
