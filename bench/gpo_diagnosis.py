"""Why GPO stayed at its prior, measured: the paper's readout against the in-context ridge readout,
with the embeddings as the base model gives them (raw) or centred and scaled (gpo/features.py),
on a world or survey where the context carries a known amount.

Per setting, one `gpo run` (a fresh folder), then: the training loss beside the loss of the prior
alone on the same batches and the gradient norm (train_history.parquet: the first and the last
validation), the validation tasks' score at k = 0 and k = 10 beside the baseline that reads the
context best, and the context ablation: the mean total variation per target question between
GPO's predictions from a context and from the same context questions with their answers
shuffled among them (0 when the context's labels never reach the targets). Validation tasks
only: nothing here reads a test task.

    python bench/gpo_diagnosis.py                                    # both synthetic worlds
    python bench/gpo_diagnosis.py --worlds w41 --steps 1000          # ATP wave 41's respondents (MiniLM)
"""

from __future__ import annotations

import argparse
import itertools
import logging
import tempfile
from pathlib import Path

import pandas as pd
import torch

from gpo.config import load_config
from gpo.evaluate import episodes
from gpo.inputs import prepare
from gpo.methods import load_gpo
from gpo.pipeline import run_evaluation, run_training
from gpo.tasks import make_episode

WORLDS = {  # config, overrides, the no-context baseline, the best context-reading baseline
    "respondents": ("configs/individual.yaml", ["data.source=synthetic", "embed.model=synthetic",
                                                 "data.synthetic_respondents.n_respondents=1000", "train.val_k=10"],
                    "population", "lowrank"),
    "groups": ("configs/synthetic.yaml", [], "mean", "kernel"),
    "w41": ("configs/individual.yaml", [], "population", "lowrank"),
    "opinionqa": ("configs/demo.yaml", [], "mean", "kernel"),
}
# the default variant is the config's, for groups the demo's (a residual over the log-linear pool)
VARIANTS = {"default": {"groups": ["model.prior=logit", "train.loss=ce"]},
            "paper": {world: ["model.prior=none", "train.loss=gaussian"] for world in WORLDS}}


def context_effect(run_dir: Path, k: int = 10, tasks: int = 300) -> float:
    """Mean total variation per target question between predictions from the context and from
    its answers shuffled among its points, on validation tasks."""
    prep = prepare(load_config(run_dir / "config.yaml"))
    _, gpo, _, _ = load_gpo([run_dir / "checkpoints" / "best.pt"], prep)
    rows, q = episodes(prep.points, prep.index(prep.split.val[:tasks]), k, 1, 0)
    episode = make_episode(prep.points, prep.labels, rows, q)
    shuffled = make_episode(prep.points, prep.labels, rows, q)
    order = torch.argsort(torch.rand(episode.ctx.shape, generator=torch.Generator().manual_seed(0)), dim=1)
    shuffled.ctx_y = torch.where(episode.ctx >= 0, episode.ctx_y.gather(1, order), 0.0)
    change = (gpo(prep.points, prep.basis, episode) - gpo(prep.points, prep.basis, shuffled)).abs().gather(1, episode.tar.clamp_min(0))
    per_question = torch.where(episode.segment >= 0, change, 0.0).sum(1) / 2 / (episode.segment.amax(1) + 1)
    return float(per_question.mean())


def diagnose(world: str, variant: str, readout: str, embedding: str, steps: int, out: Path) -> dict:
    config, overrides, reference, best = WORLDS[world]
    name = f"{world}-{variant}-{readout}-{embedding}"
    cfg = load_config(config, [*overrides, *VARIANTS[variant].get(world, []), f"model.readout={readout}",
                               f"model.scale_embedding={embedding == 'scaled'}", f"train.steps={steps}",
                               f"train.eval_every={max(1, steps // 4)}", "eval.ks=[0,10]", "eval.draws=2",
                               f"eval.baselines=[{reference},{best}]", "eval.shrink.enabled=false", f"out_dir={out}", f"name={name}"])
    prep = prepare(cfg)
    results = run_evaluation(prep, cfg, run_training(prep, cfg))  # no table printed: it would show test tasks
    effect = context_effect(cfg.run_dir)
    val = results[results.role == "val"].groupby(["method", "k"])["score"].mean()
    method = results.method[results.family == "gpo"].iloc[0]
    history = pd.read_parquet(cfg.run_dir / "train_history.parquet")
    first, last = history.iloc[1], history.iloc[-1]
    return {"world": world, "variant": variant, "readout": readout, "embedding": embedding, "steps": steps,
            "loss_first": first["loss"], "prior_loss_first": first["prior_loss"], "grad_norm_first": first["grad_norm"],
            "loss_last": last["loss"], "prior_loss_last": last["prior_loss"], "grad_norm_last": last["grad_norm"],
            "best_step": int(history.loc[history.val_score.idxmax(), "step"]), "gpo_k0": val[method, 0], "gpo_k10": val[method, 10],
            f"{reference}_k10": val[reference, 10], f"{best}_k10": val[best, 10],
            "share_of_best_gain": (val[method, 10] - val[reference, 10]) / (val[best, 10] - val[reference, 10]),
            "context_effect": effect}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", nargs="+", default=["respondents", "groups"], choices=list(WORLDS))
    parser.add_argument("--variants", nargs="+", default=["default", "paper"], choices=list(VARIANTS))
    parser.add_argument("--readouts", nargs="+", default=["mlp", "ridge"])
    parser.add_argument("--embeddings", nargs="+", default=["raw", "scaled"])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for world, variant, readout, embedding in itertools.product(args.worlds, args.variants, args.readouts, args.embeddings):
            rows.append(diagnose(world, variant, readout, embedding, args.steps, Path(out)))
            print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False), flush=True)
    print("\n" + pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
