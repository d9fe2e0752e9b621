"""Every dataset under ../shared/data loads from its few lines of YAML in examples/data and passes preflight."""

import pytest
from conftest import ROOT

from tuneforge.config.loading import load_config
from tuneforge.data.preflight import enforce
from tuneforge.train.preview import preview_data

CONFIGS = sorted((ROOT / "examples" / "data").glob("*.yaml"))
SHARED_BESIDE_REPO = ROOT.parent / "shared"  # the configs say ../shared, relative to the repository root
pytestmark = pytest.mark.skipif(not SHARED_BESIDE_REPO.is_dir(), reason="../shared not present (optional)")


def test_every_shared_dataset_has_a_config():
    data_dir = SHARED_BESIDE_REPO / "data"
    files = {
        p.relative_to(data_dir).as_posix()
        for p in data_dir.rglob("*")
        if p.suffix in {".json", ".jsonl", ".csv"}
    }
    configured = {load_config(c).data.path.removeprefix("../shared/data/") for c in CONFIGS}
    assert files == configured


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.stem)
def test_shared_dataset_loads_and_passes_preflight(config_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = load_config(config_path)
    data, _ = preview_data(config)  # as `tuneforge data` and training prepare it
    enforce(data.preflight)  # raises on any check the config leaves at "error"
    assert data.train_stats.kept > 0
    if data.format != "text":
        stats = data.train_stats
        assert stats.prompt_checked == stats.rows - stats.empty_completion
        assert not stats.prompt_mismatches and not stats.answer_mismatches
