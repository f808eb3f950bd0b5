"""The nearest respondents (knn) against a definition written out respondent by respondent: the
blocked tensor implementation (one-hot products, top-K, the neighbours' rows gathered) must give
the same numbers, on a random panel and on ATP wave 41's."""

import numpy as np
import pytest
import torch

from gpo.config import load_config
from gpo.data.synthetic import SyntheticRespondents
from gpo.evaluate import episodes
from gpo.inputs import assemble, load_respondents
from gpo.recommenders import counts, knn
from gpo.tasks import make_episode


def knn_by_hand(prep, episode, neighbours: int, smoothing: float) -> torch.Tensor:
    """One row at a time, from the panel's answers (option per question), not from one-hots."""
    panel = prep.basis
    answers = panel.answers.numpy()
    chosen, answered = (t.double().numpy() for t in panel.totals())
    tiebreak = ((panel.members * 0.6180339887) % 1) * 1e-6
    out = []
    for b in range(episode.tasks.shape[0]):
        picked = [int(p) for p, y in zip(episode.ctx[b], episode.ctx_y[b]) if p >= 0 and y > 0.5]
        prior = panel.mean(episode.tasks[b:b + 1])[0]
        if not picked:
            out.append(prior)
            continue
        questions = panel.point_question[picked].numpy()
        options = panel.point_option[picked].numpy()
        agree = (answers[:, questions] == options).sum(1)
        common = (answers[:, questions] >= 0).sum(1)
        sim = (torch.tensor(agree + 1, dtype=torch.float32) / torch.tensor(common + 2, dtype=torch.float32)) + tiebreak
        own = int(panel.column[episode.tasks[b]])
        if own >= 0:
            sim[own] = -1.0
        top = sim.topk(min(neighbours, panel.size)).indices.numpy()
        near = (torch.tensor(chosen[top].sum(0)).float() + smoothing * prior) / (torch.tensor(answered[top].sum(0)).float() + smoothing)
        out.append(near)
    return torch.stack(out)


def compare(prep, groups: list[int], neighbours: int, smoothing: float):
    for k in (0, 5, 20):
        rows, q = episodes(prep.points, groups, k, 2, seed=3)
        episode = make_episode(prep.points, prep.labels, rows, q)
        fast = knn(prep.points, prep.basis, episode, neighbours, smoothing)
        want = knn_by_hand(prep, episode, neighbours, smoothing)
        torch.testing.assert_close(fast, want, rtol=1e-5, atol=1e-6)  # float32 sums of up to 300 neighbours


def test_knn_equals_its_definition_on_a_random_panel():
    responses, x, _ = SyntheticRespondents(n_respondents=900, n_questions=40).build()
    cfg = load_config("configs/individual.yaml", ["embed.model=synthetic", "eval.ks=[0,5,20]", "train.val_k=5"])
    data, split = load_respondents(cfg, responses)
    prep = assemble(data, split, x, "cpu")
    test, train = prep.index(split.test[:40]), prep.index(split.train[:20])  # a training respondent leaves itself out
    for neighbours, smoothing in ((10, 1.0), (100, 4.0)):
        compare(prep, test + train, neighbours, smoothing)


def test_knn_equals_its_definition_on_w41(shared_data):
    cfg = load_config("configs/individual.yaml", ["embed.model=synthetic"])
    data, split = load_respondents(cfg)
    prep = assemble(data, split, np.zeros((data.n_points, 1), dtype=np.float32), "cpu")
    compare(prep, prep.index(split.test[::40] + split.train[::40]), 30, 2.0)


@pytest.mark.parametrize("ones", [3, 256, 300])
def test_one_hot_counts_are_exact(ones):
    """Counts at the edge of what bfloat16 holds exactly, and past it (float32 then)."""
    generator = torch.Generator().manual_seed(ones)
    a = torch.zeros(6, 600)
    a[:, :ones] = 1.0
    b = (torch.rand(50, 600, generator=generator) < 0.9).float()
    assert torch.equal(counts(a, b), (a.double() @ b.double().T).float())
