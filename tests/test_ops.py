import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import nnls as scipy_nnls

from gpo.ops import compact, distinct_rows, nnls, segment_softmax


def loop_segment_softmax(logits, segment):
    out = torch.zeros_like(logits)
    for b in range(logits.shape[0]):
        for s in set(segment[b].tolist()) - {-1}:
            idx = segment[b] == s
            out[b, idx] = torch.softmax(logits[b, idx], 0)
    return out


@settings(max_examples=50)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_segment_softmax_matches_loop_reference(B, N, S, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, N, generator=g, dtype=torch.float64) * 10
    segment = torch.randint(-1, S, (B, N), generator=g)
    got = segment_softmax(logits, segment)
    assert torch.allclose(got, loop_segment_softmax(logits, segment), atol=1e-12)
    # each present segment sums to one, padding gets nothing
    assert (got[segment < 0] == 0).all()
    for b in range(B):
        for s in set(segment[b].tolist()) - {-1}:
            assert got[b, segment[b] == s].sum().item() == pytest.approx(1.0)


def test_segment_softmax_gradient_is_finite_with_padding():
    logits = torch.randn(2, 5, requires_grad=True)
    segment = torch.tensor([[0, 0, 1, -1, -1], [-1, -1, -1, -1, -1]])
    segment_softmax(logits, segment)[:, :3].sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_compact_moves_kept_entries_to_front_in_order():
    keep = torch.tensor([[False, True, False, True], [True, False, False, False]])
    order, valid = compact(keep)
    assert order.shape == (2, 2)
    assert order[0].tolist() == [1, 3] and order[1, 0].item() == 0
    assert valid.tolist() == [[True, True], [True, False]]


@settings(max_examples=30)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_nnls_matches_scipy(J, seed):
    rng = np.random.default_rng(seed)
    A = rng.random((3, 40, J))
    b = np.stack([A[i] @ np.abs(rng.normal(size=J)) + 0.05 * rng.normal(size=40) for i in range(3)])
    got = nnls(torch.tensor(A), torch.tensor(b), iters=3000).numpy()
    for i in range(3):
        want, _ = scipy_nnls(A[i], b[i])
        # compare objective values (the minimiser is unique only for well-conditioned A)
        assert np.linalg.norm(A[i] @ got[i] - b[i]) == pytest.approx(np.linalg.norm(A[i] @ want - b[i]), rel=1e-4, abs=1e-6)
        assert (got[i] >= 0).all()


def test_segment_softmax_of_no_targets_is_empty():
    assert segment_softmax(torch.zeros(3, 0), torch.zeros(3, 0, dtype=torch.long)).shape == (3, 0)


@settings(max_examples=50)
@given(st.integers(0, 40), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_distinct_rows_groups_rows_exactly_as_unique_over_rows(T, C, values, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, values, (T, C), generator=g).float() * torch.randn(C, generator=g)  # many repeats
    first, inverse = distinct_rows(x)
    assert torch.equal(x[first][inverse], x)  # every row is its distinct row
    assert len(first) == len(torch.unique(x.view(torch.int32), dim=0))  # one per bit pattern (0.0 and -0.0 differ)
    assert torch.equal(inverse[first], torch.arange(len(first)))
    assert all(int(first[c]) == int((inverse == c).nonzero()[0]) for c in range(len(first)))  # the first row of each
