"""DeepSpeed tensor parallelism on a real local Ray (CPU, gloo): a replica of 2 rank actors gives
the embeddings of the plain model with prefix sharing on and holds about half the weights per
rank, on a Llama-style and a GPT-2-style model; it restarts as a whole when a rank dies; settings
it cannot run are refused before any model loads."""

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from gpo.config import EmbedConfig
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.embed.replica import check_config
from gpo.embed.survey import embed_survey
from gpo.errors import ConfigError, GPOError
from gpo.llm.random_model import build

ray = pytest.importorskip("ray")
pytest.importorskip("deepspeed")
# Alone: DeepSpeed's shared-memory all-reduce spins while a rank waits for the other, so two ranks
# beside other work on 2 cores slow each other many times over (the GPT-2-style case: 5.5 s alone,
# 11 s beside one busy process, 192 s beside two).
pytestmark = [pytest.mark.ray, pytest.mark.alone]


@pytest.fixture(scope="module")
def survey():
    table, _ = SyntheticWorld(n_questions=12, n_groups=2, seed=3).build()
    return select(table, "all")


@pytest.fixture(scope="module")
def models(survey, tmp_path_factory):
    """Random-init causal LMs that DeepSpeed's AutoTP shards: Llama-style (RMSNorm, rotary,
    gated MLP, grouped heads) and GPT-2-style (OPT: learned absolute positions, LayerNorm,
    biases, a plain MLP; DeepSpeed refuses GPT-2 itself, see below)."""
    root = tmp_path_factory.mktemp("models")
    return {arch: build(root / arch, survey.questions, n_embd=128, n_layer=2, n_head=4, arch=arch) for arch in ("llama", "opt")}


def reference(survey, model, tmp_path):
    cfg = EmbedConfig(model=model, backend="hf", workers=0, prefix_sharing="on", cache_dir=str(tmp_path / "ref"))
    return embed_survey(survey, cfg)



def assert_tp2(x, ranks, survey, model, tmp_path):
    """Rank 0's vectors are the plain model's; the two ranks are DeepSpeed processes of their own,
    each holding about half the weights; DeepSpeed's CPU all-reduce buffers (69 MB of RAM each)
    are not left behind."""
    assert np.abs(x - reference(survey, model, tmp_path)).max() <= 1e-4
    assert [r["backend"] for r in ranks] == ["deepspeed", "deepspeed"] and ranks[0]["pid"] != ranks[1]["pid"]
    net = AutoModel.from_pretrained(model)
    full = sum(p.numel() * 4 for p in net.parameters())
    projections = sum(m.weight.numel() * 4 for m in net.modules() if isinstance(m, torch.nn.Linear))
    # each rank drops the other's half of every attention and MLP projection, and keeps whole
    # copies of the embeddings and norms (a large share of a model this small)
    assert all(full - projections / 2 - 4096 <= r["param_bytes"] <= full - projections / 2 + 4096 for r in ranks)
    assert not buffers_left(ranks)


def buffers_left(ranks) -> list[Path]:
    """The CPU all-reduce buffers in /dev/shm of the replica whose ranks these are."""
    addr, port = ranks[0]["rendezvous"]
    return list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{addr}_{port}_*"))


def test_tp2_on_a_gpt2_style_model(local_ray, survey, models, tmp_path):
    seen = []
    cfg = EmbedConfig(model=models["opt"], backend="deepspeed", tp=2, workers=1, threads=1, prefix_sharing="on",
                      shard_size=4, cache_dir=str(tmp_path / "tp"))
    x = embed_survey(survey, cfg, on_shard_done=lambda done, replicas: seen.append(replicas[0]))
    assert_tp2(x, seen[-1], survey, models["opt"], tmp_path)


def test_a_killed_rank_restarts_its_whole_replica_and_every_shard_is_written_once(local_ray, survey, models, writes, tmp_path,
                                                                                 requeued):
    """On the Llama-style model, with prefix sharing on (its default for causal LMs)."""
    cfg = EmbedConfig(model=models["llama"], tp=2, workers=1, threads=1, shard_size=3, cache_dir=str(tmp_path / "tp"))
    seen = []

    def kill_rank_1(done, replicas):
        seen.append(replicas[0])
        if done == 1:  # rank 1 is mid-way through the next shard, rank 0 waits on it in an all-reduce
            os.kill(replicas[0][1]["pid"], signal.SIGKILL)

    x = embed_survey(survey, cfg, on_shard_done=kill_rank_1)
    assert requeued()
    assert sorted(writes) == [0, 1, 2, 3] and writes[0] == 0  # 12 questions / 3 per shard, each exactly once
    before, after = seen[0], seen[-1]
    assert before[0]["pid"] != after[0]["pid"] and before[1]["pid"] != after[1]["pid"]  # both new: restarted as a unit
    assert_tp2(x, after, survey, models["llama"], tmp_path)
    assert not buffers_left(before)  # the first replica's too, unlinked when it loaded


def test_tp_larger_than_any_node_is_refused_before_any_model_loads(local_ray, models, tmp_path, monkeypatch, capsys):
    from gpo.cli import main
    from gpo.embed import distributed

    monkeypatch.setattr(distributed, "Replica", lambda *a: pytest.fail("a replica was started"))
    code = main(["embed", "--dataset", "synthetic", "--model", models["llama"], "--workers", "1",
                 "--set", "embed.tp=3", "embed.backend=deepspeed", "embed.threads=1", f"embed.cache_dir={tmp_path}"])
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gpo:")]
    assert code == 2
    assert said == ["gpo: error: embed.tp=3: a replica's ranks must share one node and together need 3 CPUs (1 CPU per rank, "
                    "embed.device=auto); the largest node has 2 CPUs and 0 GPUs (lower embed.tp or embed.threads, "
                    "change embed.device, or add a larger node type)"]


def test_the_weightless_copy_has_the_models_shapes_and_no_weights(models, tmp_path):
    from gpo.embed.models import count_parameters, weightless

    real = AutoModel.from_pretrained(models["llama"])
    net = weightless(models["llama"], layers=1)
    assert all(p.device.type == "meta" for p in net.parameters()) and net.config.num_hidden_layers == 1
    one_layer = sum(p.numel() for p in real.parameters()) - sum(p.numel() for p in real.layers[1:].parameters())
    assert count_parameters(models["llama"], 1) == one_layer
    with pytest.raises(GPOError, match="no such file or folder"):
        weightless(str(models["llama"]) + "-missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(GPOError, match="cannot read the config of model"):
        weightless(str(broken))


def test_settings_tensor_parallelism_cannot_run_are_refused_up_front(survey, tmp_path):
    from transformers import GPTBigCodeConfig

    gpt2 = build(tmp_path / "gpt2", survey.questions, arch="gpt2")
    with pytest.raises(GPOError, match=r"\(gpt2\): DeepSpeed's automatic tensor parallelism does not support this family"):
        check_config(EmbedConfig(model=gpt2, tp=2))
    GPTBigCodeConfig(n_embd=64, n_head=4, multi_query=True).save_pretrained(tmp_path / "mqa")  # one shared key/value head
    with pytest.raises(GPOError, match="has 1 key/value head.*embed.tp=2 would leave a rank without one"):
        check_config(EmbedConfig(model=str(tmp_path / "mqa"), tp=2))
    with pytest.raises(ConfigError, match=r"backend: expected deepspeed or auto for tp=2"):
        EmbedConfig(model=gpt2, tp=2, backend="hf")
    with pytest.raises(ConfigError, match=r"workers: expected at least 1 for tp=2"):
        EmbedConfig(model=gpt2, tp=2, workers=0)
