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
    storage: runs/sweeps               # a folder, a shared filesystem, or s3:// / gs:// (tune/storage.py)

Unknown keys and values out of range are errors, as in experiment configs (gpo.config.from_dict).
A study that asks for GPUs (resources.gpu > 0) also extracts its embeddings on GPU ranks
(embed.device: cuda unless the study sets it), so that an autoscaler starts a GPU node for
them. Relative paths (the study file when not found from the working directory, `base`,
`storage`, and the experiment's data source and embedding cache) resolve against the project,
the checkout this package is installed from, never the working directory: `ray submit` runs a
study from `~`, Tune runs trials in their own folders, and `ray job submit --working-dir` from
a copy of the project. On a multi-node cluster `storage` must be reachable from every node
(check_storage): a bucket, or a folder outside the project that every node mounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gpo.config import PROJECT, ExperimentConfig, config_file, from_dict, in_project, load_config, read_yaml
from gpo.errors import ConfigError, require
from gpo.tune.storage import Storage

SAMPLERS = ("choice", "int", "uniform", "loguniform")
SEARCHERS = ("optuna", "random")
METRICS = ("best_val_score", "val_score")  # what trials report, higher is better


@dataclass
class Budget:
    num_samples: int = 12  # trials per (base model, k) search
    max_concurrent: int = 2  # trials running at once
    grace_period: int = 2  # validations a trial always gets before ASHA may stop it
    reduction_factor: int = 2  # ASHA keeps the best 1/reduction_factor at each rung
    searcher: str = "optuna"  # "optuna" (TPE, seeded, multivariate) or "random"
    seed: int = 0
    max_failures: int = 3  # retries of a trial or final run whose process or node died, from its last checkpoint

    def __post_init__(self):
        for key in ("num_samples", "max_concurrent", "grace_period"):
            require(getattr(self, key) >= 1, key, "at least 1", getattr(self, key))
        require(self.reduction_factor >= 2, "reduction_factor", "at least 2 (ASHA keeps 1/reduction_factor)",
                self.reduction_factor)
        require(self.searcher in SEARCHERS, "searcher", f"one of {SEARCHERS}", self.searcher)
        # Ray reads max_failures=-1 as retrying forever, and seeds numpy's generator (0 <= seed)
        for key in ("seed", "max_failures"):
            require(getattr(self, key) >= 0, key, "at least 0", getattr(self, key))


@dataclass
class Resources:
    cpu: float = 1.0  # per trial
    gpu: float = 0.0  # per trial and final run; fractions let several small trials share a GPU

    def __post_init__(self):
        for key in ("cpu", "gpu"):  # Ray's own rule for resource amounts
            value = getattr(self, key)
            require(value >= 0 and (value <= 1 or value == int(value)), key, "at least 0, and a whole number above 1", value)
        require(self.cpu + self.gpu > 0, "cpu", "more than 0 when gpu is 0 (a run that asks for nothing is never limited)",
                self.cpu)


@dataclass
class BaseModel:
    model: str = "minilm"  # embed.model
    layers: int = 0  # embed.layers (0 = all)

    def __post_init__(self):
        require(bool(self.model), "model", "a model name, hub id or path", self.model)
        require(self.layers >= 0, "layers", "at least 0", self.layers)

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
    metric: str = "best_val_score"
    storage: str = "runs/sweeps"  # a folder (shared by the nodes of a multi-node cluster) or s3://, gs://

    def __post_init__(self):
        require(bool(self.name) and "/" not in self.name, "name", "a folder name (not empty, no '/')", self.name)
        require(len(self.base_models) >= 1, "base_models", "at least one base model", self.base_models)
        for key in ("val_ks", "seeds"):
            values = getattr(self, key)
            require(len(values) >= 1 and len(set(values)) == len(values)
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values),
                    key, "a list of distinct whole numbers >= 0, at least one", values)
        require(self.metric in METRICS, "metric", f"one of {METRICS}", self.metric)
        require(bool(self.storage), "storage", "a folder or an s3:// or gs:// URI", self.storage)

    @property
    def root(self) -> Storage:
        return Storage.at(self.storage, PROJECT).child(self.name)

    def experiment(self, base_model: BaseModel, k: int, params: dict | None = None, extra=()) -> ExperimentConfig:
        """The experiment config of one run: base + overrides + base model + k + trial params."""
        values = {"embed.model": base_model.model, "embed.layers": base_model.layers, "train.val_k": k, **(params or {})}
        if values.get("train.ctx_min", 0) > values.get("train.ctx_max", float("inf")):  # a searched range came out crossed
            values["train.ctx_min"] = values["train.ctx_max"]
        cfg = load_config(in_project(self.base), [*self.overrides, *extra], values)
        if self.resources.gpu > 0 and cfg.embed.device == "auto" and cfg.embed.workers >= 1:
            # GPU ranks from the start: "auto" would see no GPU on a CPU head before the
            # autoscaler has added any, and extract on CPUs (or start a GPU node for CPU work)
            cfg.embed.device = "cuda"
        return cfg

    def check_storage(self, multi_node: bool) -> None:
        """Storage the run can write from every node: a bucket name that can exist, and on a
        multi-node cluster no folder inside the project (each node has its own copy of it)."""
        root = self.root
        if not root.is_local:
            scheme, _, rest = str(root).partition("://")
            bucket = rest.split("/")[0]
            require(bool(re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", bucket)), "storage",
                    f"{scheme}://BUCKET/PATH with a bucket of yours (lowercase letters, digits, '.', '-', '_'), not {bucket!r}",
                    self.storage)
        elif multi_node and Path(root.uri).is_relative_to(PROJECT):
            raise ConfigError(f"storage: {self.storage} is inside the project, which every node of this multi-node cluster "
                              "has its own copy of: set storage to s3://BUCKET/PATH, gs://BUCKET/PATH or a folder every "
                              "node mounts (--set storage=...)")


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    path = config_file(path)
    tree = read_yaml(path, "study")
    for item in overrides:
        key, _, value = item.partition("=")
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    try:
        models = tree.get("base_models", [{}])
        if not isinstance(models, list):
            raise ConfigError(f"base_models: expected a list, got {models!r}")
        models = [from_dict(BaseModel, m if isinstance(m, dict) else {"model": m}, "base_models.") for m in models]
        study = from_dict(StudyConfig, {**tree, "base_models": models})
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    for key, spec in study.space.items():  # the study's own form first: it needs no registry (nor torch)
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
            raise ConfigError(f"{path}: space.{key}: expected one of {SAMPLERS} with its values, got {spec!r}")
        section, _, leaf = key.partition(".")
        if not hasattr(getattr(ExperimentConfig(), section, None), leaf):
            raise ConfigError(f"{path}: space.{key}: not an experiment config key")
    cfg = study.experiment(study.base_models[0], study.val_ks[0])
    if cfg.train.ensemble != 1 or "train.ensemble" in study.space:  # ASHA compares one model's curve per trial
        raise ConfigError(f"{path}: train.ensemble: a search trains one model per trial; leave it at 1")
    for key, spec in study.space.items():
        for value in spec.get("choice", []):  # every choice makes a valid config (a prior or baseline registered, ...)
            try:
                study.experiment(study.base_models[0], study.val_ks[0], {key: value})
            except ConfigError as e:
                raise ConfigError(f"{path}: space.{key}: the choice {value!r}: {e}") from None
    return study


def search_space(study: StudyConfig) -> dict:
    """The Ray Tune param_space of a study."""
    from ray import tune

    make = {"choice": lambda v: tune.choice(v), "int": lambda v: tune.randint(v[0], v[1] + 1),
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v)}
    return {key: make[kind](values) for key, spec in study.space.items() for kind, values in spec.items()}
