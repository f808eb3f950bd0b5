"""GPO learns from its context: on synthetic worlds whose context carries a known amount, GPO as
trained (the default variant and the paper's) recovers most of what the best baseline reading
the same context gains over predicting without it, and its predictions follow the context's
labels. Each run is `gpo run` on a shipped config with a CPU budget of seconds; the scores read
are the test tasks' (nothing is chosen here)."""

import pandas as pd
import pytest
import torch
from helpers import run_gpo

from gpo.config import load_config
from gpo.evaluate import episodes
from gpo.inputs import prepare
from gpo.methods import load_gpo
from gpo.tasks import make_episode

PAPER = ["model.prior=none", "train.loss=gaussian"]  # the paper's GPO: no prior, the Gaussian likelihood
RUNS = {"respondents": ("configs/individual.yaml", [
            "data.source=synthetic", "embed.model=synthetic", "data.synthetic_respondents.n_respondents=1000",
            "train.steps=300", "train.eval_every=100", "eval.ks=[0,10]", "train.val_k=10", "eval.draws=2",
            "eval.baselines=[population,lowrank]", "eval.shrink.enabled=false"]),
        "groups": ("configs/synthetic.yaml", [
            "train.steps=300", "train.eval_every=100", "eval.ks=[0,10]", "eval.baselines=[mean,kernel]",
            "eval.shrink.enabled=false"])}
# the default variant of respondents is its shipped config's; for groups the residual over the
# log-linear pool, as the demo's default (the residual over the kernel) starts at the kernel itself
# (the default reaches 94% of lowrank's gain with batches of 16 respondents, 95% with 32: the budget
# goes to the paper's variant, 88% with 32 and 82% with 16)
VARIANTS = {"respondents": {"default": ["train.batch_groups=16"], "paper": PAPER},
            "groups": {"default": ["model.prior=logit"], "paper": PAPER}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, mean test score per (method, k); GPO's row named "gpo") of a `gpo run` of a unit's variant,
    run once per module."""
    root, done = tmp_path_factory.mktemp("runs"), {}

    def run(unit: str, variant: str):
        if (unit, variant) not in done:
            config, overrides = RUNS[unit]
            out = run_gpo("run", config, "--set", f"out_dir={root}", f"name={unit}-{variant}", *overrides, *VARIANTS[unit][variant])
            assert out.returncode == 0, out.stderr[-3000:]
            results = pd.read_parquet(root / f"{unit}-{variant}" / "results.parquet")
            test = results[results.role == "test"]
            scores = test.groupby(["method", "k"])["score"].mean().unstack("k")
            done[unit, variant] = root / f"{unit}-{variant}", scores.rename({test.method[test.family == "gpo"].iloc[0]: "gpo"})
        return done[unit, variant]
    return run


def share_recovered(scores: pd.DataFrame, gpo: str, reference: str, best: str, k: int = 10) -> float:
    """GPO's gain over the no-context `reference` at k, as a share of the best baseline's."""
    return (scores.loc[gpo, k] - scores.loc[reference, k]) / (scores.loc[best, k] - scores.loc[reference, k])


@pytest.mark.parametrize("variant", ["default", "paper"])
def test_gpo_recovers_what_the_context_tells_of_a_person(trained, variant):
    """Respondents of latent classes: the low-rank model recovers a person's class from 10
    answers (about +0.15 of accuracy over the population's shares); so must GPO."""
    _, scores = trained("respondents", variant)
    assert scores.loc["lowrank", 10] > scores.loc["population", 10] + 0.1, scores
    assert share_recovered(scores, "gpo", "population", "lowrank") >= 0.8, scores


@pytest.mark.parametrize("variant", ["default", pytest.param("paper", marks=pytest.mark.xfail(strict=True, reason=(
    "about 60% at this budget, 75% at four times it: without a prior the paper's GPO reads the training groups only "
    "through its weights, and 9 training groups teach it the group's stance less well than a pool of them (BENCHMARKS.md)")))])
def test_gpo_recovers_what_the_context_tells_of_a_group(trained, variant):
    """Groups with latent opinions: the kernel baseline reads a group's stance from 10 answers
    (about +0.3 of alignment over the training groups' mean); so must GPO."""
    _, scores = trained("groups", variant)
    assert share_recovered(scores, "gpo", "mean", "kernel") >= 0.8, scores


@pytest.mark.parametrize("unit", ["respondents", "groups"])
def test_gpo_predictions_follow_the_context_labels(trained, unit):
    """The same context questions with their answers shuffled among them: the paper's GPO, which
    has no prior to read the context for it, predicts differently (mean total variation per
    target question above 0.02)."""
    run_dir, scores = trained(unit, "paper")
    prep = prepare(load_config(run_dir / "config.yaml"))
    _, gpo, _, _ = load_gpo([run_dir / "checkpoints" / "best.pt"], prep)
    rows, q = episodes(prep.points, prep.index(prep.split.test[:200]), 10, 1, 0)
    episode = make_episode(prep.points, prep.labels, rows, q)
    order = torch.argsort(torch.rand(episode.ctx.shape, generator=torch.Generator().manual_seed(0)), dim=1)
    shuffled = make_episode(prep.points, prep.labels, rows, q)
    shuffled.ctx_y = torch.where(episode.ctx >= 0, episode.ctx_y.gather(1, order), 0.0)  # answers moved between questions
    tar = episode.tar.clamp_min(0)
    change = (gpo(prep.points, prep.basis, episode) - gpo(prep.points, prep.basis, shuffled)).abs().gather(1, tar)
    per_question = torch.where(episode.segment >= 0, change, 0.0).sum(1) / 2 / (episode.segment.amax(1) + 1)
    assert per_question.mean() > 0.02, (per_question.mean(), scores)
