import numpy as np
import pytest
import torch
from torch import nn

from gpo.config import ModelConfig
from gpo.errors import ConfigError
from gpo.model import GPO


def reference_mask(n_ctx: int, n_tar: int) -> torch.Tensor:
    """GPO's attention pattern, True = may attend: every row sees the context columns only."""
    allowed = torch.zeros(n_ctx + n_tar, n_ctx + n_tar, dtype=torch.bool)
    allowed[:, :n_ctx] = True
    return allowed


def inputs(B=3, n_ctx=7, n_tar=5, d_x=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n_ctx + n_tar, d_x, generator=g)
    y = torch.rand(B, n_ctx + n_tar, generator=g)
    valid = torch.ones(B, n_ctx + n_tar, dtype=torch.bool)
    valid[0, n_ctx - 2 : n_ctx] = False  # padded context in row 0
    valid[1, -1] = False  # padded target in row 1
    return x, y, valid


UNIFORM = torch.full((3, 12), 0.25)  # the paper's GPO: p0 is the uniform distribution


def small_model(trained=True, **kw):
    """A small GPO; `trained`: its ridge readout's query, which starts at zero, made to count."""
    torch.manual_seed(0)
    model = GPO(ModelConfig(d_model=32, n_layers=3, n_heads=4, d_ff=48, embed_depth=3, **kw), 16).eval()
    if trained and model.readout is not None:
        torch.nn.init.normal_(model.readout.query.weight)
    return model


def test_matches_torch_transformer_encoder_under_the_explicit_mask():
    model = small_model(readout="mlp")  # the paper's GPO
    x, y, valid = inputs()
    n_ctx = 7
    layers = []
    for block in model.blocks:
        ref = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, batch_first=True, norm_first=False)
        ref.self_attn.in_proj_weight.data = block.attn.qkv.weight.data
        ref.self_attn.in_proj_bias.data = block.attn.qkv.bias.data
        ref.self_attn.out_proj.weight.data = block.attn.out.weight.data
        ref.self_attn.out_proj.bias.data = block.attn.out.bias.data
        ref.linear1.load_state_dict(block.ff[0].state_dict())
        ref.linear2.load_state_dict(block.ff[3].state_dict())
        ref.norm1.load_state_dict(block.norm1.state_dict())
        ref.norm2.load_state_dict(block.norm2.state_dict())
        layers.append(ref.eval())
    y_in = torch.where(torch.arange(12) < n_ctx, y, 0.0)
    h = model.embed(torch.cat([x, y_in[..., None]], -1))
    blocked = ~reference_mask(n_ctx, 5)  # PyTorch: True = may not attend
    for ref in layers:
        h = ref(h, src_mask=blocked, src_key_padding_mask=~valid)
    want_mean, want_log_std = model.head(h[:, n_ctx:]).unbind(-1)
    mean, log_std = model(x, y, valid, n_ctx, UNIFORM)
    ok = valid[:, n_ctx:]
    assert torch.allclose(mean[ok] - UNIFORM[:, n_ctx:][ok].log(), want_mean[ok], atol=1e-5)
    assert torch.allclose(log_std[ok], want_log_std[ok], atol=1e-5)


@pytest.mark.parametrize("prior", ["none", "demographic"])
def test_a_table_of_points_read_at_ids_equals_the_same_features_per_token(prior):
    """The embedding as a table (P, d) mapped once per point gives what the gathered features give."""
    model = small_model(prior=prior)
    g = torch.Generator().manual_seed(1)
    table = torch.randn(20, 12, generator=g)
    ids = torch.randint(0, 20, (3, 12), generator=g)
    rest = torch.randn(3, 12, 4, generator=g)
    _, y, valid = inputs()
    p0 = torch.rand(3, 12, generator=g)
    a, _ = model(torch.cat([table[ids], rest], -1), y, valid, 7, p0)
    b, _ = model(rest, y, valid, 7, p0, table=table, ids=ids)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_context_permutation_does_not_change_predictions():
    model = small_model()
    x, y, valid = inputs()
    valid[:] = True
    perm = torch.cat([torch.randperm(7, generator=torch.Generator().manual_seed(3)), torch.arange(7, 12)])
    a, _ = model(x, y, valid, 7, UNIFORM)
    b, _ = model(x[:, perm], y[:, perm], valid[:, perm], 7, UNIFORM)
    assert torch.allclose(a, b, atol=1e-5)


def test_targets_do_not_see_each_other_or_their_labels():
    model = small_model()
    x, y, valid = inputs()
    a, _ = model(x, y, valid, 7, UNIFORM)
    x2, y2 = x.clone(), y.clone()
    x2[:, 8:] = torch.randn_like(x2[:, 8:])  # change every target but the first
    y2[:, 7:] = 123.0  # target labels must never be read
    b, _ = model(x2, y2, valid, 7, UNIFORM)
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-6)


@pytest.mark.parametrize("readout", ["mlp", "ridge"])
def test_context_labels_change_predictions(readout):
    model = small_model(readout=readout)
    x, y, valid = inputs()
    a, _ = model(x, y, valid, 7, UNIFORM)
    y2 = y.clone()
    y2[:, :7] = 1 - y2[:, :7]
    b, _ = model(x, y2, valid, 7, UNIFORM)
    assert not torch.allclose(a, b)


def test_the_ridge_readout_is_a_ridge_regression_of_the_context_residuals():
    model = small_model(readout="ridge", prior="mean")
    readout = model.readout
    g = torch.Generator().manual_seed(1)
    h_ctx, h_tar, r = torch.randn(2, 6, 32, generator=g), torch.randn(2, 4, 32, generator=g), torch.randn(2, 6, generator=g)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 4:] = False  # padding reads nothing
    got = readout(h_ctx, h_tar, r, valid)
    lam = float(torch.nn.functional.softplus(readout.alpha.detach())) + 1e-3
    for b, n in ((0, 6), (1, 4)):  # numpy's least squares on the stacked ridge system
        K = readout.key(h_ctx[b, :n]).double().detach().numpy()
        A = np.vstack([K, np.sqrt(lam) * np.eye(K.shape[1])])
        w = np.linalg.lstsq(A, np.concatenate([r[b, :n].double().numpy(), np.zeros(K.shape[1])]), rcond=None)[0]
        want = readout.query(h_tar[b]).double().detach().numpy() @ w
        assert np.allclose(got[b].detach().numpy(), want, atol=1e-4)
    assert torch.equal(readout(h_ctx[:, :0], h_tar, r[:, :0], valid[:, :0]), torch.zeros(2, 4))  # no context: nothing


def test_no_context_gives_finite_predictions():
    model = small_model()
    x, y, valid = inputs(n_ctx=0)
    mean, log_std = model(x, y, valid, 0, UNIFORM[:, :5])
    assert torch.isfinite(mean).all() and torch.isfinite(log_std).all()


@pytest.mark.parametrize("readout", ["mlp", "ridge"])
def test_prior_variant_starts_at_the_prior(readout):
    model = small_model(trained=False, prior="mixture", readout=readout)
    x, y, valid = inputs()
    prior = torch.rand(3, 12) + 0.05
    mean, _ = model(x, y, valid, 7, prior)
    assert torch.allclose(mean, prior[:, 7:].log(), atol=1e-6)


def test_model_runs_on_the_device_of_its_inputs():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = small_model().to(device)
    x, y, valid, prior = (t.to(device) for t in (*inputs(), UNIFORM))
    mean, _ = model(x, y, valid, 7, prior)
    assert mean.device.type == device


def test_heads_must_divide_width():
    with pytest.raises(ConfigError, match=r"d_model: expected a multiple of n_heads \(4\), got 30"):
        ModelConfig(d_model=30, n_heads=4)


@pytest.mark.parametrize("prior", ["none", "kernel"])
def test_without_context_each_distinct_token_is_computed_once_with_the_same_predictions(prior):
    """At k = 0 a target attends to nothing: equal tokens (point, features, prior) are computed
    once, and every prediction equals the one computed token by token."""
    model = small_model(prior=prior)
    g = torch.Generator().manual_seed(1)
    table, d_rest = torch.randn(6, 12, generator=g), 16 - 12
    ids = torch.randint(-1, 6, (8, 9), generator=g)  # 8 rows of 9 tokens over 6 points, -1 padding
    rest = torch.randn(2, d_rest, generator=g)[torch.arange(8) % 2]  # two kinds of task: features per row
    features = rest[:, None, :].expand(8, 9, d_rest).contiguous()
    p0 = torch.rand(6, generator=g)[ids.clamp_min(0)] * (1 + torch.arange(8)[:, None] % 2)
    args = dict(features=features, y=torch.rand(8, 9, generator=g), valid=ids >= 0, n_ctx=0, prior=p0, table=table, ids=ids)
    sizes = []
    hook = model.blocks[0].register_forward_pre_hook(lambda module, a: sizes.append(a[0].shape[:2]))
    mean, log_std = model(**args)
    hook.remove()
    full_mean, full_log_std = model.compute(**args)
    assert sizes[0][0] == 1 and sizes[0][1] <= 2 * 7  # at most (6 points + padding) x 2 kinds of task
    assert torch.allclose(mean, full_mean, atol=1e-5) and torch.allclose(log_std, full_log_std, atol=1e-5)
