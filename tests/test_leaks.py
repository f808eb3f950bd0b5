"""No method can read what it must not: every method (GPO and its variants, each cheap
baseline, each LLM baseline) gives identical predictions when everything it must not read
is poisoned: the target questions' shares, other test groups' answers, and, for a training
group predicted as a training task, its own answers outside the context (which also reach
the other training groups' columns through the basis imputation)."""

import numpy as np
import pytest
import torch
from torch import nn

from gpo import registry
from gpo.baselines import baseline_method
from gpo.config import LLMConfig, ModelConfig
from gpo.data.basis import Basis
from gpo.data.splits import split_groups
from gpo.data.survey import select
from gpo.data.synthetic import SyntheticWorld
from gpo.evaluate import predict
from gpo.inputs import assemble
from gpo.llm import LLM_BASELINES
from gpo.methods import gpo_features, gpo_method
from gpo.model import GPO
from gpo.shrink import PerTask, shrunk
from gpo.tasks import sample_questions


@pytest.fixture(scope="module")
def prep():
    """A synthetic survey whose groups answer different subsets of the questions, so missing
    basis shares are imputed from the groups that answered."""
    table, x = SyntheticWorld(n_questions=40, n_groups=10, seed=3).build()
    keep = np.random.default_rng(0).random(len(table)) > 0.35
    keep |= table["group"].eq("group00").to_numpy()  # every question survives, so x keeps its point order
    data = select(table[keep], "all", require_all_groups=False)
    split = split_groups(data.tasks, 0.5, 0.2, seed=0)
    return assemble(data, split, x, "cpu")


def poisoned(prep, rows: torch.Tensor, ctx_points: torch.Tensor, groups: list[int]) -> tuple[torch.Tensor, Basis]:
    """Labels with every answered share of `groups` replaced by noise, except each row's
    context points, and the basis rebuilt from them."""
    labels = prep.labels.clone()
    noise = torch.rand(labels.shape, generator=torch.Generator().manual_seed(7))
    answered = ~labels.isnan()
    for g in groups:
        labels[g] = torch.where(answered[g], noise[g], labels[g])
    for r, g in enumerate(rows.tolist()):
        ctx = ctx_points[r][ctx_points[r] >= 0]
        labels[g, ctx] = prep.labels[g, ctx]
    basis = Basis.build(labels, prep.index(prep.split.train), prep.points.uniform())
    return labels, basis


def context_points(prep, rows, q):
    from gpo.tasks import make_episode

    return make_episode(prep.points, prep.labels, rows, q).ctx


def gpo_variants(prep):
    out = {}
    for name, cfg in {"gpo": ModelConfig(d_model=32, n_layers=2, n_heads=4, d_ff=32),
                      "gpo[kernel+basis]": ModelConfig(d_model=32, n_layers=2, n_heads=4, d_ff=32, prior="kernel",
                                                       features=["embedding", "basis"])}.items():
        torch.manual_seed(0)
        features = gpo_features(prep, cfg, {})
        model = GPO(cfg, features.width).eval()
        nn.init.normal_(model.head[-1].weight)  # a residual variant starts at its prior: make the learned part count
        nn.init.normal_(model.readout.query.weight)  # ... and the readout, which starts at nothing
        out[name] = gpo_method(model, features, baseline_method("kernel") if cfg.prior == "kernel" else None)
    return out


def methods(prep):
    gpo = gpo_variants(prep)
    # shrunk per task, a method also reads its context's shares through the leave-one-out episodes
    loo = {f"{name} shrunk per task": shrunk(method, baseline_method("mean"), 0.0, PerTask(0.0))
           for name, method in (("gpo", gpo["gpo"]), ("kernel", baseline_method("kernel")))}
    return {**gpo, **loo, **{name: baseline_method(name) for name in registry.names("group")}}


def assert_blind(method, prep, rows, q, poison_groups):
    clean = predict(method, prep.points, prep.labels, prep.basis, rows, q)
    labels, basis = poisoned(prep, rows, context_points(prep, rows, q), poison_groups)
    assert not torch.equal(labels.nan_to_num(), prep.labels.nan_to_num())  # the poison is there
    assert torch.equal(predict(method, prep.points, labels, basis, rows, q), clean)


def test_no_method_reads_targets_or_other_test_groups(prep):
    test = prep.index(prep.split.test)
    rows = torch.tensor(test[:2] + prep.index(prep.split.val)[:1])
    q = sample_questions(prep.points.available[rows], 5, None, torch.Generator().manual_seed(1))
    for name, method in methods(prep).items():
        assert_blind(method, prep, rows, q, poison_groups=test + prep.index(prep.split.val))


def test_a_training_task_reads_neither_its_own_column_nor_its_own_answers_through_the_imputation(prep):
    for g in prep.index(prep.split.train)[:3]:
        rows = torch.tensor([g])
        q = sample_questions(prep.points.available[rows], 5, None, torch.Generator().manual_seed(g))
        for name, method in methods(prep).items():
            if name != "uniform":
                assert_blind(method, prep, rows, q, poison_groups=[g])


def test_the_poison_test_can_fail(prep):
    """A method that reads a training group's own column (directly, or through the imputation of
    the other columns) is caught."""
    g = prep.index(prep.split.train)[0]
    rows = torch.tensor([g])
    q = sample_questions(prep.points.available[rows], 5, None, torch.Generator().manual_seed(0))

    def peek(points, basis, episode):
        return basis.y[basis.column[episode.tasks]]

    with pytest.raises(AssertionError):
        assert_blind(peek, prep, rows, q, poison_groups=[g])


@pytest.mark.parametrize("name", LLM_BASELINES)
def test_llm_baselines_read_only_the_context(prep, llm_dir, name):
    pytest.importorskip("peft")
    from gpo.llm.methods import LLM, make

    llm = LLM(LLMConfig(model=llm_dir, lora_steps=2, icft_steps=2, samples_per_question=5, batch_size=4), "cpu")
    method = make(name, llm, prep.data.text, prep.points, prep.basis, 2)
    test = prep.index(prep.split.test)
    rows = torch.tensor(test[:2])
    q = sample_questions(prep.points.available[rows], 2, 2, torch.Generator().manual_seed(2))
    assert_blind(method, prep, rows, q, poison_groups=test)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    from gpo.llm.random_model import build

    table, _ = SyntheticWorld(n_questions=40, n_groups=2).build()
    return build(tmp_path_factory.mktemp("tiny-gpt2"), table["question"].unique())
