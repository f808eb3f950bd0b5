"""Meta-training over training groups, with model selection on validation groups only.

Each step draws `batch_groups` training groups (with replacement), one context size and
one target size for the batch, and a random question order per group. Every `eval_every`
steps the model is scored few-shot on the validation groups (fixed episodes) and a
checkpoint is written; the best validation score is kept as best.pt. Checkpoints hold
the model, optimizer, step, RNG states and history, so a resumed run continues exactly as
an uninterrupted one would (tests check this bit for bit).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gpo.data.basis import Basis
from gpo.features import PointFeatures, gpo_inputs
from gpo.losses import LOSSES
from gpo.model import GPO
from gpo.progress import progress
from gpo.tasks import Points, make_episode, sample_questions, shares_at

log = logging.getLogger(__name__)


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def context_range(step: int, cfg) -> tuple[int, int]:
    """Smallest and largest context size at `step`: with a curriculum the largest grows
    linearly from ctx_min to ctx_max over the first ctx_curriculum steps (short contexts
    first, as in-context learners are often trained), then stays."""
    if not cfg.ctx_curriculum:
        return cfg.ctx_min, cfg.ctx_max
    grown = min(1.0, step / cfg.ctx_curriculum)
    return cfg.ctx_min, cfg.ctx_min + round(grown * (cfg.ctx_max - cfg.ctx_min))


@dataclass
class TrainState:
    step: int = 0
    best_score: float = -math.inf
    best_step: int = -1
    # moving averages over training batches: the loss, the loss of the prior alone on the same
    # batches (its correction at zero; the uniform distribution for the paper's GPO), the
    # gradient norm before clipping
    running: dict = field(default_factory=dict)
    tokens: int = 0  # points (context + target) processed, for compute estimates
    history: list = field(default_factory=list)  # one dict per validation, with the averages

    def observe(self, **values: float) -> None:
        for key, value in values.items():
            old = self.running.get(key, math.nan)
            self.running[key] = value if math.isnan(old) else 0.95 * old + 0.05 * value


def save_checkpoint(path: Path, model, optimizer, generator, state: TrainState, config: dict, fitted: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "state": vars(state), "config": config, "d_features": model.d_features, **fitted,
    }, tmp)
    os.replace(tmp, path)


def resume(ckpt_dir: Path, model: GPO, optimizer, generator: torch.Generator, device) -> TrainState:
    """The state of ckpt_dir/last.pt, its model, optimizer and RNGs restored; a new state when
    there is none."""
    last = ckpt_dir / "last.pt"
    if not last.is_file():
        return TrainState()
    ckpt = torch.load(last, map_location=device, weights_only=False)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    return TrainState(**ckpt["state"])


@dataclass
class Checkpoints:
    """Validation and checkpoints of one training run: each call scores the model on the
    validation tasks, records the running averages, and writes last.pt (and best.pt when the
    score is the best so far)."""

    model: GPO
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    state: TrainState
    ckpt_dir: Path
    config: dict
    fitted: dict
    validate: object  # (model) -> float
    on_validate: object  # (state, ckpt_dir) -> None, or None
    bar: object
    start: float  # perf_counter() at the run's step 0, earlier sessions' wall time included

    def __call__(self) -> None:
        state = self.state
        self.model.eval()
        score = self.validate(self.model)
        self.model.train()
        state.history.append({"step": state.step, **dict.fromkeys(("loss", "prior_loss", "grad_norm"), math.nan),
                              **state.running, "val_score": score, "wall_s": time.perf_counter() - self.start})
        saved = (self.model, self.optimizer, self.generator, state, self.config, self.fitted)
        if score > state.best_score:
            state.best_score, state.best_step = score, state.step
            save_checkpoint(self.ckpt_dir / "best.pt", *saved)
        save_checkpoint(self.ckpt_dir / "last.pt", *saved)
        if self.on_validate is not None:
            self.on_validate(state, self.ckpt_dir)
        loss = state.running.get("loss", math.nan)
        shown = "-" if math.isnan(loss) else f"{loss:.3f}"  # step 0: nothing trained yet
        self.bar.set_postfix(loss=shown, val=f"{score:.4f}", best=f"{state.best_score:.4f}@{state.best_step}")


def train(model: GPO, points: Points, labels: torch.Tensor, basis: Basis, features: PointFeatures, train_groups: list[int],
          validate, cfg, ckpt_dir: Path, config: dict, prior=None, fitted: dict | None = None, on_validate=None,
          desc: str = "meta-train") -> TrainState:
    """Meta-train `model` in place on the training groups' rows of `labels` (G, P), reading
    the points' `features`, resuming from ckpt_dir/last.pt if present.

    validate(model) -> float scores the validation groups (higher is better). prior: the
    baseline (points, basis, episode) -> (B, P) that residual variants correct. `fitted`: what
    the prior and the features were built with, kept in checkpoints ({"prior_choices": {k:
    Choice fields}, "feature_params": {feature: settings}}). on_validate(state, checkpoint_dir)
    runs after each validation's checkpoint is written (sweeps report to Ray Tune there).
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    device = points.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    state = resume(ckpt_dir, model, optimizer, generator, device)
    if state.step:
        log.info("resuming %s at step %d of %d", ckpt_dir, state.step, cfg.steps)
    if state.step >= cfg.steps:
        return state

    groups = torch.as_tensor(train_groups, device=device)
    available = points.available[groups]
    fewest = int(available.sum(1).min())  # a context never takes every question of a group: targets remain
    loss_fn = LOSSES[cfg.loss]
    start = time.perf_counter() - (state.history[-1]["wall_s"] if state.history else 0.0)
    model.train()
    with progress(total=cfg.steps, initial=state.step, desc=desc, unit="step") as bar:
        checkpoint = Checkpoints(model, optimizer, generator, state, ckpt_dir, config, fitted or {}, validate, on_validate,
                                 bar, start)
        if not state.history:
            checkpoint()  # step 0: the untrained model (for prior variants, the baseline)
        while state.step < cfg.steps:
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * cosine_lr(state.step, cfg.steps, cfg.warmup)
            rows = torch.randint(len(train_groups), (cfg.batch_groups,), generator=generator, device=device)
            lo, hi = (min(c, fewest - 1) for c in context_range(state.step, cfg))
            n_ctx = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=device))
            n_tar = int(torch.randint(cfg.tar_min, cfg.tar_max + 1, (1,), generator=generator, device=device))
            questions = sample_questions(available[rows], n_ctx, n_tar, generator, shared=int(cfg.question_order == "batch"))
            episode = make_episode(points, labels, groups[rows], questions)
            inputs = gpo_inputs(features, points, basis, episode, prior)
            mean, log_std = model(**inputs)
            y = shares_at(labels, episode.tasks, episode.tar)
            loss = loss_fn(mean, log_std, y, episode.segment)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
            optimizer.step()
            with torch.no_grad():
                prior_loss = loss_fn(inputs["prior"][:, episode.n_ctx:].clamp_min(1e-6).log(), log_std, y, episode.segment)
            state.step += 1
            state.tokens += int(inputs["valid"].sum())
            bar.update(1)
            state.observe(loss=loss.item(), prior_loss=prior_loss.item(), grad_norm=grad_norm.item())
            if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
                checkpoint()
    return state


def load_model(path: Path, device="cpu") -> tuple[GPO, dict]:
    """A trained GPO from a checkpoint, with the resolved experiment config it was trained under."""
    from gpo.config import ModelConfig, from_dict

    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = GPO(from_dict(ModelConfig, ckpt["config"]["model"]), ckpt["d_features"]).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
