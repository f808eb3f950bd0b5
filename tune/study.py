"""A sweep study as a YAML file: which runs to start from, what to search, with what budget.

    name: opinionqa-arch
    base: configs/demo.yaml            # the experiment every trial starts from
    overrides: [train.steps=600]       # dotted overrides of the base, for every trial
    base_models: [{model: minilm, layers: 3}, {model: minilm}]
    val_ks: [20]                       # one search per context size k the model is tuned for
    seeds: [0, 1, 2]                   # the best config is retrained with each, then tested once
    space:                             # dotted key -> one of choice / int / uniform / loguniform
      model.d_model: {choice: [64, 128]}
      train.lr: {loguniform: [1.0e-4, 3.0e-3]}
    budget: {num_samples: 12, max_concurrent: 2, grace_period: 2, searcher: optuna}
    resources: {cpu: 1, gpu: 0}

Unknown keys are errors, as in experiment configs (gpo.config.from_dict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gpo.config import ExperimentConfig, from_dict, load_config
from gpo.errors import ConfigError

SAMPLERS = ("choice", "int", "uniform", "loguniform")


@dataclass
class Budget:
    num_samples: int = 12  # trials per (base model, k) search
    max_concurrent: int = 2  # trials running at once
    grace_period: int = 2  # validations a trial always gets before ASHA may stop it
    reduction_factor: int = 2  # ASHA keeps the best 1/reduction_factor at each rung
    searcher: str = "optuna"  # "optuna" (TPE, seeded, multivariate) or "random"
    seed: int = 0


@dataclass
class Resources:
    cpu: float = 1.0  # per trial
    gpu: float = 0.0  # per trial; fractions let several small trials share a GPU


@dataclass
class BaseModel:
    model: str = "minilm"  # embed.model
    layers: int = 0  # embed.layers (0 = all)

    @property
    def tag(self) -> str:
        name = self.model.rstrip("/").split("/")[-1]
        return f"{name}-L{self.layers}" if self.layers else name


@dataclass
class StudyConfig:
    name: str = "study"
    base: str = "configs/demo.yaml"
    overrides: list = field(default_factory=list)
    base_models: list = field(default_factory=lambda: [BaseModel()])
    val_ks: list = field(default_factory=lambda: [20])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    space: dict = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    resources: Resources = field(default_factory=Resources)
    metric: str = "best_val_alignment"
    storage: str = "runs/sweeps"

    @property
    def root(self) -> Path:
        return Path(self.storage).resolve() / self.name

    def experiment(self, base_model: BaseModel, k: int, params: dict | None = None, extra=()) -> ExperimentConfig:
        """The experiment config of one run: base + overrides + base model + k + trial params."""
        values = {"embed.model": base_model.model, "embed.layers": base_model.layers, "train.val_k": k, **(params or {})}
        if values.get("train.ctx_min", 0) > values.get("train.ctx_max", float("inf")):  # a searched range came out crossed
            values["train.ctx_min"] = values["train.ctx_max"]
        return load_config(self.base, [*self.overrides, *extra], values)


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: study file not found")
    tree = yaml.safe_load(path.read_text()) or {}
    for item in overrides:
        key, _, value = item.partition("=")
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    try:
        study = from_dict(StudyConfig, {k: v for k, v in tree.items() if k != "base_models"})
        study.base = str(Path(study.base).resolve())  # trials run in their own folders
        study.base_models = [from_dict(BaseModel, m if isinstance(m, dict) else {"model": m}, "base_models.")
                             for m in tree.get("base_models", [{}])]
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    for key, spec in study.space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
            raise ConfigError(f"{path}: space.{key}: expected one of {SAMPLERS} with its values, got {spec!r}")
    cfg = study.experiment(study.base_models[0], study.val_ks[0])  # every key must exist in the experiment config
    if cfg.train.ensemble != 1 or "train.ensemble" in study.space:  # ASHA compares one model's curve per trial
        raise ConfigError(f"{path}: train.ensemble: a search trains one model per trial; leave it at 1")
    for key in study.space:
        section, _, leaf = key.partition(".")
        if not hasattr(getattr(ExperimentConfig(), section, None), leaf):
            raise ConfigError(f"{path}: space.{key}: not an experiment config key")
    return study


def search_space(study: StudyConfig) -> dict:
    """The Ray Tune param_space of a study."""
    from ray import tune

    make = {"choice": lambda v: tune.choice(v), "int": lambda v: tune.randint(v[0], v[1] + 1),
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v)}
    return {key: make[kind](values) for key, spec in study.space.items() for kind, values in spec.items()}
