import math

import pytest
import torch

from gpo.losses import cross_entropy, gaussian_nll
from gpo.ops import segment_softmax


def example():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2, 6, generator=g)
    log_std = torch.randn(2, 6, generator=g) * 0.3
    segment = torch.tensor([[0, 0, 1, 1, 1, -1], [0, 0, 0, 1, 1, 2]])
    y = torch.tensor([[0.3, 0.7, 0.2, 0.5, 0.3, 0.0], [0.1, 0.1, 0.8, 0.4, 0.6, 1.0]])
    return mean, log_std, y, segment


def test_gaussian_nll_matches_torch_normal_summed_over_points_averaged_over_batch():
    mean, log_std, y, segment = example()
    p = segment_softmax(mean, segment)
    ok = segment >= 0
    want = -torch.distributions.Normal(p[ok], log_std.exp()[ok]).log_prob(y[ok]).sum() / 2
    assert gaussian_nll(mean, log_std, y, segment).item() == pytest.approx(want.item(), rel=1e-6)


def test_cross_entropy_averages_over_questions():
    mean, log_std, y, segment = example()
    p = segment_softmax(mean, segment)
    ok = segment >= 0
    want = -(y[ok] * p[ok].log()).sum() / 5  # 2 + 3 questions
    assert cross_entropy(mean, log_std, y, segment).item() == pytest.approx(want.item(), rel=1e-6)


def test_cross_entropy_is_minimised_by_the_true_distribution():
    _, log_std, y, segment = example()
    at_truth = cross_entropy(y.clamp_min(1e-9).log(), log_std, y, segment)
    other = cross_entropy(torch.zeros_like(y), log_std, y, segment)
    assert at_truth < other
    entropy = -(torch.xlogy(y, y)[segment >= 0]).sum() / 5
    assert at_truth.item() == pytest.approx(entropy.item(), abs=1e-6)
    assert math.isfinite(at_truth.item())
