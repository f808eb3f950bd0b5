import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from gpo.metrics import accuracy, alignment, js_alignment, log_loss, ordinal_alignment


def padded(rows, width):
    p = torch.zeros(len(rows), width, dtype=torch.float64)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        p[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
        mask[i, : len(r)] = True
    return p, mask


def test_ordinal_alignment_by_hand():
    # all mass on the first vs the last of 1..4: W1 = 3, span 3 -> alignment 0
    p, mask = padded([[1, 0, 0, 0], [0.5, 0.5, 0, 0]], 4)
    q, _ = padded([[0, 0, 0, 1], [0, 0.5, 0.5, 0]], 4)
    ordinal = torch.tensor([[1.0, 2, 3, 4]] * 2, dtype=torch.float64)
    # second row: shift of half the mass by one step each -> W1 = 1, span 3
    assert ordinal_alignment(p, q, ordinal, mask).tolist() == pytest.approx([0.0, 1 - 1 / 3])


def test_js_alignment_by_hand():
    p, mask = padded([[1, 0], [0.5, 0.5]], 2)
    q, _ = padded([[0, 1], [0.5, 0.5]], 2)
    # disjoint supports: JS divergence = ln 2, distance sqrt(ln 2)
    assert js_alignment(p, q, mask).tolist() == pytest.approx([1 - np.sqrt(np.log(2)), 1.0])


# no subnormal shares: scipy's reference overflows on them (see the test after this one)
distributions = st.integers(2, 7).flatmap(
    lambda n: st.tuples(*[st.lists(st.floats(0.0, 1.0, allow_subnormal=False), min_size=n, max_size=n)
                          .filter(lambda v: sum(v) > 0.01)] * 2,
                        st.lists(st.floats(-5, 5), min_size=n, max_size=n, unique=True))
)


def reference_js_alignment(a, b) -> float:
    # scipy takes the square root of a divergence that rounding can make slightly negative
    # for near-identical distributions (NaN); the distance there is 0
    with np.errstate(invalid="ignore"):
        return 1 - float(np.nan_to_num(jensenshannon(a, b), nan=0.0))


@settings(max_examples=60)
@given(st.lists(distributions, min_size=1, max_size=5))
@example([([0.2003141756835477, 0.37198770559600397, 0.056420464855709375, 0.371277653864739],  # scipy: NaN
           [0.20031417568354853, 0.37198770559600364, 0.056420464855709326, 0.37127765386473865], [1.0, 2.0, 3.0, 4.0])])
def test_metrics_match_scipy_with_padding_and_unsorted_ordinals(cases):
    width = 9  # wider than any row: padding must not change the scores
    ps = [np.array(a) / sum(a) for a, _, _ in cases]
    qs = [np.array(b) / sum(b) for _, b, _ in cases]
    ords = [np.array(o) for _, _, o in cases]
    p, mask = padded(ps, width)
    q, _ = padded(qs, width)
    ordinal = torch.full((len(cases), width), torch.nan, dtype=torch.float64)
    for i, o in enumerate(ords):
        ordinal[i, : len(o)] = torch.tensor(o)
    expect_w = [1 - wasserstein_distance(o, o, a, b) / (o.max() - o.min()) for a, b, o in zip(ps, qs, ords)]
    expect_js = [reference_js_alignment(a, b) for a, b in zip(ps, qs)]
    assert ordinal_alignment(p, q, ordinal, mask).tolist() == pytest.approx(expect_w, abs=1e-9)
    assert js_alignment(p, q, mask).tolist() == pytest.approx(expect_js, abs=1e-7)
    is_ord = torch.tensor([i % 2 == 0 for i in range(len(cases))])
    mixed = alignment(p, q, ordinal, mask, is_ord).tolist()
    assert mixed == pytest.approx([w if i % 2 == 0 else j for i, (w, j) in enumerate(zip(expect_w, expect_js))], abs=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_subnormal_share_scores_as_a_zero_share(dtype):
    # half the smallest subnormal rounds to 0: a mixture computed as (p + q) / 2 puts log 0
    # under a positive share (alignment -inf; scipy's jensenshannon returns 1.8e308 here)
    tiny = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps  # the smallest subnormal
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    q = torch.tensor([[1.0, tiny], [tiny, 1.0]], dtype=dtype)
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert (q > 0).all() and (0.5 * q == 0).any()
    assert js_alignment(p, q, mask).tolist() == pytest.approx(js_alignment(p, p, mask).tolist(), abs=1e-6)


def test_identical_distributions_score_one():
    p, mask = padded([[0.2, 0.3, 0.5]], 3)
    ordinal = torch.tensor([[1.0, 2.0, 1.5]], dtype=torch.float64)
    assert ordinal_alignment(p, p, ordinal, mask).item() == pytest.approx(1.0)
    assert js_alignment(p, p, mask).item() == pytest.approx(1.0)


def test_options_off_the_scale_are_left_out_of_w1_and_the_rest_renormalised():
    # "Yes" (1), "No" (2), "Not sure" (off the scale): W1 over Yes/No of the renormalised shares
    p, mask = padded([[0.3, 0.3, 0.4]], 4)
    q, _ = padded([[0.7, 0.1, 0.2]], 4)
    ordinal = torch.tensor([[1.0, 2.0, torch.nan, torch.nan]], dtype=torch.float64)
    expected = 1 - wasserstein_distance([1, 2], [1, 2], [0.5, 0.5], [0.875, 0.125]) / 1
    assert alignment(p, q, ordinal, mask, torch.tensor([True])).item() == pytest.approx(expected)
    # the same shares with every option on a scale score differently: the option was really dropped
    full = torch.tensor([[1.0, 2.0, 3.0, torch.nan]], dtype=torch.float64)
    assert alignment(p, q, full, mask, torch.tensor([True])).item() != pytest.approx(expected)


def test_accuracy_counts_ties_as_fractions_and_ignores_padding():
    p, mask = padded([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.5, 0.5]], 4)
    true, _ = padded([[0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0]], 4)
    assert accuracy(p, true, mask).tolist() == [1.0, 0.5, 0.0, 0.5]


@settings(max_examples=60)
@given(st.lists(st.integers(2, 6).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.0, 1.0, allow_subnormal=False), min_size=n, max_size=n).filter(lambda v: sum(v) > 0),
    st.integers(0, n - 1))), min_size=1, max_size=6))
def test_accuracy_and_log_loss_match_a_loop(cases):
    p, mask = padded([np.array(v) / sum(v) for v, _ in cases], 7)
    true, _ = padded([np.eye(len(v))[a] for v, a in cases], 7)
    expected_acc, expected_loss = [], []
    for v, a in cases:
        v = np.array(v) / sum(v)
        tied = [i for i in range(len(v)) if v[i] == v.max()]
        expected_acc.append((a in tied) / len(tied))
        expected_loss.append(-np.log(max(v[a], 1e-6)))
    assert accuracy(p, true, mask).tolist() == pytest.approx(expected_acc)
    assert log_loss(p, true, mask).tolist() == pytest.approx(expected_loss)
