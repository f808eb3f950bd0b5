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
from gpo.evaluate import Method, evaluate
from gpo.model import GPO
from gpo.ops import segment_softmax
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


def load_gpo(checkpoints: list[Path], device) -> tuple[str, Method, dict]:
    """The GPO method of one checkpoint, or of several averaged (an ensemble): its name,
    the method, and its training totals (steps per member; the rest summed over members)."""
    members, totals = [], dict.fromkeys(["gpo_params", "train_tokens", "train_flops", "train_s"], 0.0)
    for path in checkpoints:
        model, ckpt = load_model(path, device)
        prior = baseline_method(model.cfg.prior, **ckpt["prior_params"]) if model.cfg.prior != "none" else None
        members.append(gpo_method(model, prior))
        tokens, history = ckpt["state"].get("tokens", 0), ckpt["state"]["history"]
        # dense training FLOPs ~ 6 x parameters x tokens (attention's share is left out)
        for key, value in (("gpo_params", model.n_params()), ("train_tokens", tokens),
                           ("train_flops", 6.0 * model.n_params() * tokens),
                           ("train_s", history[-1]["wall_s"] if history else 0.0)):
            totals[key] += value
    name = gpo_name(model.cfg) + (f"-ens{len(members)}" if len(members) > 1 else "")
    method = members[0] if len(members) == 1 else ensemble_method(members)
    return name, method, {**totals, "train_steps": ckpt["state"]["step"]}


def validation_score(prep: Prepared, cfg: ExperimentConfig, method: Method) -> float:
    """Mean alignment on the validation groups at k = train.val_k (fixed episodes)."""
    results = evaluate({"m": method}, prep.points, prep.labels, prep.basis, prep.index(prep.split.val), prep.data.groups,
                       [cfg.train.val_k], cfg.eval.draws, cfg.eval.seed + 1)
    if results.empty:
        raise ConfigError(f"train.val_k: {cfg.train.val_k} context questions leave no validation group anything to predict")
    return float(results["alignment"].mean())


def choose(prep: Prepared, cfg: ExperimentConfig, name: str) -> dict:
    """A baseline's hyperparameters, chosen from its grid on the validation groups."""
    grid = GRIDS.get(name, {})
    candidates = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if len(candidates) <= 1:
        return candidates[0] if candidates else {}
    best = max(candidates, key=lambda p: validation_score(prep, cfg, baseline_method(name, **p)))
    log.info("%s: %s chosen on validation groups", name, best)
    return best


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


def build(prep: Prepared, cfg: ExperimentConfig, checkpoints: list[Path], llm_names=None) -> tuple[dict[str, Method], dict]:
    """Every method a run evaluates, and GPO's training totals: GPO from `checkpoints` (their
    predictions averaged when there are several), each of eval.baselines with the settings
    chosen on validation groups, and the LLM baselines (`llm_names`, default eval.llm_baselines)."""
    methods, training = {}, {}
    if checkpoints:
        name, methods[name], training = load_gpo(checkpoints, prep.points.device)
    methods.update({name: baseline_method(name, **choose(prep, cfg, name)) for name in cfg.eval.baselines})
    methods.update(llm_baselines(prep, cfg, cfg.eval.llm_baselines if llm_names is None else llm_names))
    return methods, training
