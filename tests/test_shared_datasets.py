"""Every dataset under ../shared/data loads from its few lines of YAML in examples/data and passes preflight."""

import pytest
from conftest import ROOT

from tuneforge.config_loading import load_config
from tuneforge.data import prepare_data
from tuneforge.modeling import load_tokenizer
from tuneforge.preflight import enforce

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
    data = prepare_data(config.data, load_tokenizer(config.model), config.train.max_length)
    enforce(data.preflight)  # raises on any check the config leaves at "error"
    assert data.train_stats.kept > 0
    if data.format != "text":
        assert data.train_stats.prompt_checked > 0 and not data.train_stats.prompt_mismatches
