"""Every evaluated method, built in one place: GPO from its checkpoints, the cheap baselines
with their settings chosen per k (gpo/selection.py), and the LLM baselines. A method maps
(points, basis, episode) to (B, P) probabilities; evaluation only runs them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from gpo.baselines import baseline_method
from gpo.config import ExperimentConfig
from gpo.data.basis import Basis
from gpo.device import pick_device
from gpo.errors import ConfigError
from gpo.features import PointFeatures, build_features, gpo_inputs
from gpo.inputs import Prepared
from gpo.model import GPO
from gpo.ops import segment_softmax
from gpo.selection import baseline, choose, per_task, restored, shrink_gpo
from gpo.tasks import Episode, Kind, Labelled, Method, Points
from gpo.train import load_model

log = logging.getLogger(__name__)

# Floats of one activation (tokens x d_model) when GPO predicts: batches of 2^20 (4 MB, 16,384
# tokens of a 64-wide model) stay within a CPU's cache and were the fastest here (BENCHMARKS.md).
ACTIVATION_FLOATS = 2**20


def gpo_method(model: GPO, features: PointFeatures, prior: Method | None = None) -> Method:
    """GPO's predictions, as many rows at a time as keep an activation within ACTIVATION_FLOATS."""
    tokens = ACTIVATION_FLOATS // model.cfg.d_model

    def batch(points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
        mean, _ = model(**gpo_inputs(features, points, basis, episode, prior))
        p_tar = segment_softmax(mean, episode.segment)
        out = torch.zeros(episode.tar.shape[0], points.x.shape[0] + 1, device=points.device)
        tar_points = torch.where(episode.segment >= 0, episode.tar, points.x.shape[0])
        return out.scatter(1, tar_points, p_tar)[:, :-1]  # padding lands in the spare last column

    @torch.inference_mode()
    def predict(points: Points, basis: Basis, episode: Episode) -> torch.Tensor:
        rows = max(1, tokens // max(1, episode.points.shape[1]))
        return torch.cat([batch(points, basis, episode.rows(slice(s, s + rows))) for s in range(0, len(episode.tasks), rows)])
    return predict


def ensemble_method(members: list[Method]) -> Method:
    """The average of the members' predicted distributions (a mixture of their predictions)."""
    return lambda points, basis, episode: torch.stack([m(points, basis, episode) for m in members]).mean(0)


def variant_parts(model_cfg) -> tuple[str, str]:
    """('paper', '') for the paper's variant (no prior, the embedding alone); ('logit', ''),
    ('lowrank+loadings', '-mlp'), ...: the prior, then the features beyond the embedding, and
    '-mlp' where the paper's readout is not the default's."""
    extra = [f for f in model_cfg.features if f != "embedding"]
    parts = ([model_cfg.prior] if model_cfg.prior != "none" else []) + sorted(extra)
    return "+".join(parts) or "paper", "-mlp" if model_cfg.readout == "mlp" else ""


def gpo_variant(model_cfg) -> str:
    """'paper', 'logit', 'lowrank+loadings-mlp': a result row's `variant`."""
    return "".join(variant_parts(model_cfg))


def gpo_name(model_cfg) -> str:
    """'gpo-paper', 'gpo[logit]', 'gpo[lowrank+loadings]-mlp': the variant in a name."""
    core, mlp = variant_parts(model_cfg)
    return ("gpo-paper" if core == "paper" else f"gpo[{core}]") + mlp


def feature_params(prep: Prepared, cfg: ExperimentConfig) -> dict:
    """The settings GPO's features are built with, chosen on validation tasks: the attributes
    of the demographic feature."""
    if "demographic" not in cfg.model.features:
        return {}
    return {"demographic": choose(prep, cfg, "demographic")[0].params}  # one setting for every k: it reads no context


def gpo_features(prep: Prepared, model_cfg, params: dict) -> PointFeatures:
    """A model's point features (gpo/features.py) on a run's survey, with the settings
    `feature_params` chose."""
    demographic = baseline_method("demographic", **params["demographic"]) if "demographic" in params else None
    return build_features(model_cfg.features, prep.points, prep.basis, demographic, model_cfg.scale_embedding)


SHRUNK = "+shrink"  # the name of a GPO shrunk toward its reference ends with it


def load_gpo(checkpoints: list[Path], prep: Prepared) -> tuple[str, Method, Method | None, dict]:
    """The GPO method of one checkpoint, or of several averaged (an ensemble), on `prep`'s
    survey: its name, the method, its prior (residual variants; None otherwise) and its
    training totals (steps per member; the rest summed over members)."""
    members, totals = [], dict.fromkeys(["gpo_params", "train_tokens", "train_flops", "train_s"], 0.0)
    for path in checkpoints:
        model, ckpt = load_model(path, prep.points.device)
        prior = baseline(model.cfg.prior, restored(ckpt["prior_choices"])) if model.cfg.prior != "none" else None
        features = gpo_features(prep, model.cfg, ckpt["feature_params"])
        if features.width != model.d_features:
            raise ConfigError(f"{path}: the model reads {model.d_features} features per point, this survey gives "
                              f"{features.width} ({', '.join(features.names)}): another base model or another basis")
        members.append(gpo_method(model, features, prior))
        tokens, history = ckpt["state"].get("tokens", 0), ckpt["state"]["history"]
        # dense training FLOPs ~ 6 x parameters x tokens (attention's share is left out)
        for key, value in (("gpo_params", model.n_params()), ("train_tokens", tokens),
                           ("train_flops", 6.0 * model.n_params() * tokens),
                           ("train_s", history[-1]["wall_s"] if history else 0.0)):
            totals[key] += value
    name = gpo_name(model.cfg) + (f"-ens{len(members)}" if len(members) > 1 else "")
    method = Labelled(members[0] if len(members) == 1 else ensemble_method(members),
                      Kind("gpo", gpo_variant(model.cfg), ensemble=len(members)))
    return name, method, prior, {**totals, "train_steps": ckpt["state"]["step"]}


def llm_baselines(prep: Prepared, cfg: ExperimentConfig, names: list[str]) -> dict[str, Method]:
    """The paper's LLM baselines on `llm.model` (they share one loaded model)."""
    if not names:
        return {}
    if not cfg.llm.model:
        raise ConfigError("eval.llm_baselines needs llm.model (a causal LM hub id or local folder)")
    from gpo.llm.methods import LLM, make

    llm = LLM(cfg.llm, pick_device(cfg.llm.device))
    k = max(cfg.eval.ks)
    return {f"llm-{name}": Labelled(make(name, llm, prep.data.text, prep.points, prep.basis, k), Kind("llm", name))
            for name in names}


def build(prep: Prepared, cfg: ExperimentConfig, checkpoints: list[Path],
          llm_names=None) -> tuple[dict[str, Method], dict, dict[str, str]]:
    """Every method a run evaluates, GPO's training totals, and the methods that cannot run
    here with the reason. GPO comes from `checkpoints` (their predictions averaged when there
    are several), as trained and shrunk toward its reference (`NAME+shrink`); each of eval.baselines with its settings
    chosen per k on validation (and training) groups; the LLM baselines (`llm_names`, default
    eval.llm_baselines). Methods that combine the training groups' answers read, on questions
    no training group answered, the shares predicted from the questions (gpo/question_prior.py);
    where no training group answered any of the test groups' questions and the embeddings
    predict no better than the uniform distribution, they are listed as unable to run."""
    methods, training, unavailable = {}, {}, {}
    covered = basis_coverage(prep)
    predicted = prep.question_prior is not None and prep.question_prior.alpha is not None
    if covered == 0 and not predicted:
        reason = "no training group answered any of the test groups' questions, and the embeddings predict no better than uniform"
        unavailable = {name: reason for name in cfg.eval.baselines if name not in ("uniform",)}
    if covered < 1 and not unavailable:
        used = prep.question_prior.describe() if prep.question_prior else "the uniform distribution"
        log.warning("%.0f%% of the test groups' answers are to questions no training group answered: there the mean, "
                    "the pools, the mixture, the kernel and a residual GPO's prior combine the training groups' shares "
                    "predicted by %s", 100 * (1 - covered), used)
    if checkpoints:
        name, gpo, prior, training = load_gpo(checkpoints, prep)
        if unavailable and (prior is not None or gpo_reads_basis(checkpoints)):
            unavailable[name] = reason
        elif unavailable:  # its reference, the mean prior, cannot run: GPO as it is
            methods[name] = gpo
        else:  # as trained, and (when shrinking is on) shrunk toward its reference, under a name that says so
            methods[name] = gpo
            if cfg.eval.shrink.enabled:
                methods[name + SHRUNK] = Labelled(shrink_gpo(prep, cfg, name, gpo, prior), replace(gpo.kind, shrunk=True))
    methods.update({name: baseline(name, choose(prep, cfg, name), per_task(prep, cfg))
                    for name in cfg.eval.baselines if name not in unavailable})
    methods.update(llm_baselines(prep, cfg, cfg.eval.llm_baselines if llm_names is None else llm_names))
    return methods, training, unavailable


def basis_coverage(prep: Prepared) -> float:
    """The share of the test groups' answers (points) that some training group also answered."""
    answered = ~prep.labels[prep.index(prep.split.test)].isnan()
    return float((answered & prep.basis.covered).sum() / answered.sum().clamp_min(1))


def gpo_reads_basis(checkpoints: list[Path]) -> bool:
    return "basis" in load_model(checkpoints[0])[0].cfg.features
