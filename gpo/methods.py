"""Every evaluated method, built in one place: GPO from its checkpoints, the cheap baselines
with their hyperparameters chosen on validation groups, and the LLM baselines. A method maps
(points, basis, episode) to (B, P) probabilities; evaluation only runs them.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gpo.baselines import BASELINES, GRIDS
from gpo.data.basis import Basis
from gpo.errors import ConfigError
from gpo.evaluate import Method, episodes, evaluate, predictions, score
from gpo.model import GPO
from gpo.ops import segment_softmax
from gpo.progress import progress
from gpo.shrink import SHRINK, shrunk
from gpo.tasks import Episode, Points, gpo_inputs
from gpo.train import load_model

if TYPE_CHECKING:
    from gpo.config import ExperimentConfig
    from gpo.pipeline import Prepared

log = logging.getLogger(__name__)


def gpo_method(model: GPO, prior: Method | None = None) -> Method:
    @torch.no_grad()
    def predict(points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
        mean, _ = model(**gpo_inputs(points, basis, episode, prior, model.n_basis > 0))
        p_tar = segment_softmax(mean, episode.segment)
        out = torch.zeros(episode.tar.shape[0], points.x.shape[0] + 1, device=points.device)
        tar_points = torch.where(episode.segment >= 0, episode.tar, points.x.shape[0])
        return out.scatter(1, tar_points, p_tar)[:, :-1]  # padding lands in the spare last column
    return predict


def ensemble_method(members: list[Method]) -> Method:
    """The average of the members' predicted distributions (a mixture of their predictions)."""
    return lambda points, basis, episode: torch.stack([m(points, basis, episode) for m in members]).mean(0)


def baseline_method(name: str, **params) -> Method:
    fn = BASELINES[name]
    return lambda points, basis, episode: fn(points, basis, episode, **params)


def gpo_name(model_cfg) -> str:
    """'gpo' for the paper's architecture; 'gpo[logit]', 'gpo[basis]', 'gpo[logit+basis]' for variants."""
    parts = ([model_cfg.prior] if model_cfg.prior != "none" else []) + (["basis"] if model_cfg.basis else [])
    return f"gpo[{'+'.join(parts)}]" if parts else "gpo"


def load_gpo(checkpoints: list[Path], device) -> tuple[str, Method, Method | None, dict]:
    """The GPO method of one checkpoint, or of several averaged (an ensemble): its name, the
    method, its prior (residual variants; None otherwise) and its training totals (steps per
    member; the rest summed over members)."""
    members, totals = [], dict.fromkeys(["gpo_params", "train_tokens", "train_flops", "train_s"], 0.0)
    for path in checkpoints:
        model, ckpt = load_model(path, device)
        prior = baseline(model.cfg.prior, ckpt["prior_params"]) if model.cfg.prior != "none" else None
        members.append(gpo_method(model, prior))
        tokens, history = ckpt["state"].get("tokens", 0), ckpt["state"]["history"]
        # dense training FLOPs ~ 6 x parameters x tokens (attention's share is left out)
        for key, value in (("gpo_params", model.n_params()), ("train_tokens", tokens),
                           ("train_flops", 6.0 * model.n_params() * tokens),
                           ("train_s", history[-1]["wall_s"] if history else 0.0)):
            totals[key] += value
    name = gpo_name(model.cfg) + (f"-ens{len(members)}" if len(members) > 1 else "")
    method = members[0] if len(members) == 1 else ensemble_method(members)
    return name, method, prior, {**totals, "train_steps": ckpt["state"]["step"]}


def validation_score(prep: Prepared, cfg: ExperimentConfig, method: Method) -> float:
    """Mean alignment on the validation groups at k = train.val_k (fixed episodes)."""
    results = evaluate({"m": method}, prep.points, prep.labels, prep.basis, prep.index(prep.split.val), prep.data.groups,
                       [cfg.train.val_k], cfg.eval.draws, cfg.eval.seed + 1)
    if results.empty:
        raise ConfigError(f"train.val_k: {cfg.train.val_k} context questions leave no validation group anything to predict")
    return float(results["alignment"].mean())


class PerK:
    """A method whose settings were chosen per context size: the entry of the nearest k."""

    def __init__(self, table: dict[int, Method]):
        self.table = dict(sorted(table.items()))

    def __call__(self, points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
        k = min(self.table, key=lambda c: (abs(c - episode.k), c))
        return self.table[k](points, basis, episode)


def context_sizes(cfg: ExperimentConfig) -> list[int]:
    """The k at which settings are chosen: every evaluated k and the validation k of training."""
    return sorted({*cfg.eval.ks, cfg.train.val_k})


def select(prep: Prepared, cfg: ExperimentConfig, candidates: dict[str, Method], reference: Method,
           label: str, groups: list[str]) -> dict[int, tuple[str, float, float]]:
    """For every k of context_sizes: a candidate and a shrink weight (SHRINK, or 0 only when
    eval.shrink is off), as {k: (candidate key, weight, score)}, scored by mean alignment on
    `groups`. The choice is the most shrunk setting within one standard error (over the
    groups) of the best one: a few groups cannot tell settings that close apart, and shrinking
    is the safer side. Weight 1 (the reference alone) is always a choice, so on `groups` a
    shrunk method never scores clearly below its reference."""
    points, labels, basis, rows_of = prep.points, prep.labels, prep.basis, prep.index(groups)
    weights = SHRINK if cfg.eval.shrink else (0.0,)
    ks = context_sizes(cfg)
    chosen = {}
    with progress(total=len(ks) * len(candidates), desc=f"choose {label}", unit="setting") as bar:
        for k in ks:
            rows, q = episodes(points, rows_of, k, cfg.eval.draws, cfg.eval.seed + 1)
            scored = q.tar_ok.reshape(len(rows_of), -1).any(-1)  # groups with something left to predict at this k
            reference_p = predictions(reference, points, labels, basis, rows, q)
            options = []  # (key, weight, per-group scores)
            for key, method in candidates.items():
                p = predictions(method, points, labels, basis, rows, q)
                for w in weights:
                    per_group = score(points, labels, (1 - w) * p + w * reference_p, rows, q).reshape(len(rows_of), -1).mean(1)
                    options.append((key, w, per_group[scored].double()))
                bar.update(1)
            if scored.any():
                best = max(options, key=lambda o: o[2].mean())
                close = [o for o in options if o[2].mean() >= best[2].mean() - standard_error(best[2] - o[2])]
                key, w, per_group = max(close, key=lambda o: (o[1], o[2].mean()))
                chosen[k] = (key, w, float(per_group.mean()))
    if not chosen:
        raise ConfigError(f"eval.ks: no group to choose on has anything left to predict at any of {ks}")
    log.info("%s, chosen on %d groups: %s", label, len(groups),
             "; ".join(f"k={k}: {key or ''}{' ' if key else ''}{w:.0%} reference ({v:.4f})" for k, (key, w, v) in chosen.items()))
    return chosen


def standard_error(differences: torch.Tensor) -> float:
    """Standard error of the mean of paired per-group differences (0 for a single group)."""
    n = differences.numel()
    return float(differences.std() / n**0.5) if n > 1 else 0.0


def choose(prep: Prepared, cfg: ExperimentConfig, name: str) -> dict[int, dict]:
    """A baseline's settings per k, chosen on the validation and training groups: its
    hyperparameters (from GRIDS) and, unless it ignores the context, its shrink toward the mean prior.
    Returns {k: {"params": ..., "shrink": w}} (stored with a residual GPO's checkpoints)."""
    grid = GRIDS.get(name, {})
    candidates = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    if name in NO_CONTEXT:
        return {k: {"params": candidates[0], "shrink": 0.0} for k in context_sizes(cfg)}
    by_key = {", ".join(f"{p}={v}" for p, v in c.items()): c for c in candidates}
    # a baseline trains nothing, so the training groups, each predicted from the basis without
    # itself (as a test group is), choose its settings too: several times the validation groups
    chosen = select(prep, cfg, {key: baseline_method(name, **c) for key, c in by_key.items()}, baseline_method("mean"), name,
                    prep.split.val + prep.split.train)
    return {k: {"params": by_key[key], "shrink": w} for k, (key, w, _) in chosen.items()}


NO_CONTEXT = ("uniform", "mean")  # baselines that never read the context: nothing to shrink


def baseline(name: str, choice: dict, per_task_se: float | None = None) -> Method:
    """A baseline with its per-k settings (`choose`), shrunk more where a task's own context
    asks for it, with tolerance `per_task_se` (gpo/shrink.py; None: not); or with fixed
    hyperparameters (a flat dict, as checkpoints of older runs hold)."""
    if not choice or not all(isinstance(k, int) for k in choice):
        return baseline_method(name, **choice)
    return PerK({k: shrunk(baseline_method(name, **c["params"]), baseline_method("mean"), c["shrink"],
                           None if name in NO_CONTEXT else per_task_se) for k, c in choice.items()})


def gpo_choices(prep: Prepared, cfg: ExperimentConfig, name: str, method: Method,
                prior: Method | None) -> dict[int, tuple[Method, float]]:
    """Per k, GPO as chosen on its groups and its weight of the no-context mean: shrunk toward
    the mean, or, for a residual GPO, toward its prior (weight 0 of the mean).

    The weight is chosen on the validation groups, which GPO has not seen. With
    eval.shrink_training_floor it is at least the one chosen on GPO's training groups: they
    flatter GPO (it was fit to their answers), so where even they prefer it more shrunk, unseen
    groups will too, and two or three validation groups unlike the test groups cannot argue
    it out of that."""
    reference = prior or baseline_method("mean")
    chosen = {k: w for k, (_, w, _) in select(prep, cfg, {"": method}, reference, name, prep.split.val).items()}
    if cfg.eval.shrink_training_floor:
        seen = select(prep, cfg, {"": method}, reference, f"{name} on its training groups", prep.split.train)
        chosen = {k: max(w, seen[k][1] if k in seen else 0.0) for k, w in chosen.items()}
    if prior is None:
        return {k: (method, w) for k, w in chosen.items()}
    return {k: (shrunk(method, prior, w), 0.0) for k, w in chosen.items()}


def shrink_gpo(prep: Prepared, cfg: ExperimentConfig, name: str, method: Method, prior: Method | None) -> Method:
    """GPO shrunk toward its reference (a residual GPO's prior, else the no-context mean) by a
    weight chosen per k on the validation groups; GPO itself when eval.shrink is off. With
    eval.shrink_per_task each task's context may shrink it further toward the mean, as it does
    the baselines: a residual GPO's prior can mislead a task as much as GPO itself."""
    if not cfg.eval.shrink:
        return method
    mean = baseline_method("mean")
    return PerK({k: shrunk(m, mean, w, cfg.eval.task_se())
                 for k, (m, w) in gpo_choices(prep, cfg, name, method, prior).items()})


def llm_baselines(prep: Prepared, cfg: ExperimentConfig, names: list[str]) -> dict[str, Method]:
    """The paper's LLM baselines on `llm.model` (they share one loaded model)."""
    if not names:
        return {}
    if not cfg.llm.model:
        raise ConfigError("eval.llm_baselines needs llm.model (a causal LM hub id or local folder)")
    from gpo.embed.survey import pick_device
    from gpo.llm.methods import LLM, make

    llm = LLM(cfg.llm, pick_device(cfg.llm.device))
    k = max(cfg.eval.ks)
    return {f"llm-{name}": make(name, llm, prep.data.text, prep.points, prep.basis, k) for name in names}


def build(prep: Prepared, cfg: ExperimentConfig, checkpoints: list[Path],
          llm_names=None) -> tuple[dict[str, Method], dict, dict[str, str]]:
    """Every method a run evaluates, GPO's training totals, and the methods that cannot run
    here with the reason. GPO comes from `checkpoints` (their predictions averaged when there
    are several), shrunk toward its reference; each of eval.baselines with its settings
    chosen per k on validation (and training) groups; the LLM baselines (`llm_names`, default
    eval.llm_baselines). Methods that combine the training groups' answers need them on the
    test groups' questions: where no training group answered any (a survey with other
    questions), they are listed as unable to run, never guessed."""
    methods, training, unavailable = {}, {}, {}
    covered = basis_coverage(prep)
    if covered == 0:
        reason = "no training group answered any of the test groups' questions"
        unavailable = {name: reason for name in cfg.eval.baselines if name not in ("uniform",)}
    elif covered < 1:
        log.warning("%.0f%% of the test groups' answers are to questions no training group answered: there the methods "
                    "that combine the training groups' answers fall back to the uniform distribution", 100 * (1 - covered))
    if checkpoints:
        name, gpo, prior, training = load_gpo(checkpoints, prep.points.device)
        if covered == 0 and (prior is not None or gpo_reads_basis(checkpoints)):
            unavailable[name] = reason
        elif covered == 0:  # its reference, the mean prior, cannot run: GPO as it is
            methods[name] = gpo
        else:
            methods[name] = shrink_gpo(prep, cfg, name, gpo, prior)
    methods.update({name: baseline(name, choose(prep, cfg, name), cfg.eval.task_se())
                    for name in cfg.eval.baselines if name not in unavailable})
    methods.update(llm_baselines(prep, cfg, cfg.eval.llm_baselines if llm_names is None else llm_names))
    return methods, training, unavailable


def basis_coverage(prep: Prepared) -> float:
    """The share of the test groups' answers (points) that some training group also answered."""
    answered = ~prep.labels[prep.index(prep.split.test)].isnan()
    return float((answered & prep.basis.answered.any(0)).sum() / answered.sum().clamp_min(1))


def gpo_reads_basis(checkpoints: list[Path]) -> bool:
    return load_model(checkpoints[0])[0].n_basis > 0
