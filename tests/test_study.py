"""Study files (tune/study.py): every field is range-checked when the study is read, a study
that asks for GPUs extracts on GPU ranks, and storage is checked for the cluster it runs on."""

from pathlib import Path

import pytest

from gpo.errors import ConfigError
from gpo.tune.study import load_study

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "tune" / "studies" / "opinionqa.yaml"


@pytest.mark.parametrize("override, message", [
    ("budget.max_failures=-1", "budget.max_failures: expected at least 0, got -1"),  # Ray: retry forever
    ("budget.num_samples=0", "budget.num_samples: expected at least 1, got 0"),
    ("budget.num_samples=-3", "budget.num_samples: expected at least 1, got -3"),
    ("budget.max_concurrent=0", "budget.max_concurrent: expected at least 1, got 0"),
    ("budget.grace_period=0", "budget.grace_period: expected at least 1, got 0"),
    ("budget.reduction_factor=0", "budget.reduction_factor: expected at least 2"),
    ("budget.reduction_factor=1", "budget.reduction_factor: expected at least 2"),
    ("budget.searcher=grid", "budget.searcher: expected one of ('optuna', 'random'), got 'grid'"),
    ("budget.seed=-1", "budget.seed: expected at least 0, got -1"),
    ("resources.cpu=-1", "resources.cpu: expected at least 0, and a whole number above 1, got -1.0"),
    ("resources.gpu=1.5", "resources.gpu: expected at least 0, and a whole number above 1, got 1.5"),
    ("resources.cpu=0", "resources.cpu: expected more than 0 when gpu is 0"),
    ("seeds=[]", "seeds: expected a list of distinct whole numbers >= 0, at least one, got []"),  # ran the search, then failed
    ("seeds=[0,0]", "seeds: expected a list of distinct whole numbers >= 0"),
    ("val_ks=[]", "val_ks: expected a list of distinct whole numbers >= 0"),
    ("base_models=[]", "base_models: expected at least one base model, got []"),
    ("base_models=[{model: minilm, layers: -1}]", "base_models.layers: expected at least 0, got -1"),
    ("name=a/b", "name: expected a folder name (not empty, no '/'), got 'a/b'"),
    ("metric=loss", "metric: expected one of ('best_val_score', 'val_score'), got 'loss'"),
])
def test_a_study_field_out_of_range_is_refused_when_read(override, message):
    with pytest.raises(ConfigError) as refused:
        load_study(STUDY, [override])
    assert str(refused.value).startswith(f"{STUDY}: {message}")
    assert "\n" not in str(refused.value)


def test_a_study_that_asks_for_gpus_extracts_on_gpu_ranks():
    gpu = load_study(ROOT / "tune" / "studies" / "opinionqa-gpu.yaml")
    assert gpu.resources.gpu > 0 and gpu.experiment(gpu.base_models[0], 5).embed.device == "cuda"
    chosen = load_study(ROOT / "tune" / "studies" / "opinionqa-gpu.yaml", ["overrides=[embed.device=cpu]"])
    assert chosen.experiment(chosen.base_models[0], 5).embed.device == "cpu"  # the study's own choice stays
    cpu = load_study(STUDY)
    assert cpu.experiment(cpu.base_models[0], 20).embed.device == "auto"


def test_storage_is_checked_for_the_cluster_it_runs_on(tmp_path):
    gpu = load_study(ROOT / "tune" / "studies" / "opinionqa-gpu.yaml")
    with pytest.raises(ConfigError, match=r"^storage: expected s3://BUCKET/PATH with a bucket of yours .*not 'YOUR-BUCKET'"):
        gpu.check_storage(multi_node=True)  # the shipped placeholder
    for uri in ("s3://my-bucket/sweeps", "gs://my_bucket.example/sweeps", "s3://gpo-test/s?endpoint_override=h:9000&scheme=http"):
        load_study(STUDY, [f"storage={uri}"]).check_storage(multi_node=True)
    local = load_study(STUDY)  # runs/sweeps, inside the project: each node's own copy
    local.check_storage(multi_node=False)
    with pytest.raises(ConfigError, match=r"^storage: runs/sweeps is inside the project, which every node"):
        local.check_storage(multi_node=True)
    load_study(STUDY, [f"storage={tmp_path}"]).check_storage(multi_node=True)  # elsewhere: a mount the nodes may share
