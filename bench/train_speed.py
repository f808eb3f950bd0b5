"""Training speed: the vectorised GPO step vs a straightforward per-task, per-question loop.

Both compute the same forward pass and Gaussian loss on the same batch from the same
weights (checked before timing): the loop runs each task through nn.TransformerEncoder
with the explicit (N, N) GPO mask over context + targets, softmaxes each target question
in a Python loop and sums the per-point likelihoods; the vectorised one is gpo.model /
gpo.losses (context-only keys, segment softmax). Steps are interleaved, and the ratio of
steps/second is printed.

    python bench/train_speed.py [--groups 8] [--ctx 100] [--tar 100] [--steps 10]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from gpo.config import load_config
from gpo.features import gpo_inputs
from gpo.inputs import prepare
from gpo.losses import gaussian_nll
from gpo.methods import gpo_features
from gpo.model import GPO
from gpo.tasks import make_episode, sample_questions, shares_at


class LoopGPO(nn.Module):
    """The same network written the direct way: one task and one question at a time."""

    def __init__(self, model: GPO):
        super().__init__()
        cfg = model.cfg
        self.embed, self.head = model.embed, model.head  # shared weights
        layers = []
        for block in model.blocks:
            ref = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, dropout=0.0, batch_first=True)
            ref.self_attn.in_proj_weight, ref.self_attn.in_proj_bias = block.attn.qkv.weight, block.attn.qkv.bias
            ref.self_attn.out_proj.weight, ref.self_attn.out_proj.bias = block.attn.out.weight, block.attn.out.bias
            ref.linear1, ref.linear2 = block.ff[0], block.ff[3]
            ref.norm1, ref.norm2 = block.norm1, block.norm2
            layers.append(ref)
        self.layers = nn.ModuleList(layers)

    def loss(self, inputs: dict, y_targets: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        X = torch.cat([inputs["table"][inputs["ids"].clamp_min(0)], inputs["features"]], -1)  # each token's whole features
        Y, valid, n_ctx_all = inputs["y"], inputs["valid"], inputs["n_ctx"]
        total = 0.0
        for b in range(X.shape[0]):
            ctx = valid[b, :n_ctx_all]
            tar = valid[b, n_ctx_all:]
            x = torch.cat([X[b, :n_ctx_all][ctx], X[b, n_ctx_all:][tar]])
            y = torch.cat([Y[b, :n_ctx_all][ctx], torch.zeros(int(tar.sum()))])
            n_ctx, n = int(ctx.sum()), x.shape[0]
            blocked = torch.ones(n, n, dtype=torch.bool)
            blocked[:, :n_ctx] = False  # every token attends to the context only
            h = self.embed(torch.cat([x, y[:, None]], -1))[None]
            for layer in self.layers:
                h = layer(h, src_mask=blocked)
            mean, log_std = self.head(h[0, n_ctx:]).unbind(-1)
            segment = segments[b][tar]
            y_tar = y_targets[b][tar]
            for s in segment.unique().tolist():
                idx = (segment == s).nonzero().flatten()
                p = torch.softmax(mean[idx], 0)
                for j, i in enumerate(idx.tolist()):
                    sd = log_std[i].exp()
                    total = total + 0.5 * ((y_tar[i] - p[j]) / sd) ** 2 + log_std[i] + 0.5 * math.log(2 * math.pi)
        return total / X.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=100)
    parser.add_argument("--tar", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    cfg = load_config(args.config, ["model.prior=none", "model.readout=mlp"])  # the paper's network, which the loop writes out
    prep = prepare(cfg)
    torch.manual_seed(0)
    features = gpo_features(prep, cfg.model, {})
    model = GPO(cfg.model, features.width)
    loop = LoopGPO(model)
    g = torch.Generator().manual_seed(0)
    train = torch.as_tensor(prep.index(prep.split.train))
    rows = train[torch.randint(len(train), (args.groups,), generator=g)]
    episode = make_episode(prep.points, prep.labels, rows, sample_questions(prep.points.available[rows], args.ctx, args.tar, g))
    inputs, y_tar = gpo_inputs(features, prep.points, prep.basis, episode), shares_at(prep.labels, rows, episode.tar)

    def vectorised_loss():
        mean, log_std = model(**inputs)
        return gaussian_nll(mean, log_std, y_tar, episode.segment)

    a, b = vectorised_loss().item(), loop.loss(inputs, y_tar, episode.segment).item()
    assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), f"the two implementations disagree: {a} vs {b}"
    opt = torch.optim.Adam(model.parameters(), lr=0.0)  # lr 0: identical batches every step

    def step(loss_fn) -> float:
        start = time.perf_counter()
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        return time.perf_counter() - start

    times = {"vectorised": [], "loop": []}
    step(vectorised_loss), step(lambda: loop.loss(inputs, y_tar, episode.segment))  # warm-up
    for _ in range(args.steps):
        times["vectorised"].append(step(vectorised_loss))
        times["loop"].append(step(lambda: loop.loss(inputs, y_tar, episode.segment)))
    tokens = int(inputs["valid"].sum())
    print(f"batch: {args.groups} groups x ({args.ctx} context + {args.tar} target questions) = {tokens} points, "
          f"d_x {prep.points.x.shape[1]}, {torch.get_num_threads()} threads; same loss {a:.4f} vs {b:.4f}")
    for name, t in times.items():
        med = sorted(t)[len(t) // 2]
        print(f"{name:>10}: {1 / med:7.2f} steps/s (median of {len(t)} steps, {med * 1000:.0f} ms)")
    ratio = sorted(times["loop"])[args.steps // 2] / sorted(times["vectorised"])[args.steps // 2]
    print(f"speed-up of the vectorised step over the loop: {ratio:.1f}x")


if __name__ == "__main__":
    main()
