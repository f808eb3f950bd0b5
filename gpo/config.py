"""Experiment configuration: typed dataclasses, YAML files mapped onto them, dotted overrides.

`load_config("configs/demo.yaml", ["train.steps=500"])` merges the defaults below, the
YAML file and the overrides, in that order; an unknown key or a value of the wrong type is
an error naming the key. The resolved config is written into every run's folder.

Relative paths in a config (data files, the embedding cache, the runs folder) are relative
to the project, the checkout this package is installed from, so a config means the same
from any working folder; a config file named on the command line is looked for in the
working folder first, then in the project.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gpo.data.splits import REFERENCE_VALIDATION
from gpo.data.synthetic import SyntheticRespondents, SyntheticWorld
from gpo.device import check_device
from gpo.errors import ConfigError, require
from gpo.llm import LLM_BASELINES
from gpo.llm.prompts import STYLES
from gpo.prompts import TEMPLATES


def _project() -> Path:
    """The checkout the package is installed from (`pip install -e`), also where a copy of it is
    imported from (`ray job submit --working-dir`); without an editable install, the folder
    holding gpo/."""
    try:
        url = json.loads(importlib.metadata.distribution("gpo-study").read_text("direct_url.json") or "{}").get("url", "")
    except importlib.metadata.PackageNotFoundError:
        url = ""
    return Path(urllib.parse.urlparse(url).path) if url.startswith("file://") else Path(__file__).resolve().parents[1]


PROJECT = _project()
DEFAULT_DATA_DIR = "../shared/data"  # the shared data beside the checkout; GPO_DATA_DIR overrides


def in_project(path: str | Path) -> Path:
    """A path as written in a config: absolute, or relative to the project."""
    return (PROJECT / Path(path).expanduser()).resolve()


def config_file(path: str | Path) -> Path:
    """A config or study file named on the command line: from the working folder, else the project."""
    path = Path(path)
    return path if path.is_file() or path.is_absolute() or not in_project(path).is_file() else in_project(path)
DTYPES = ("float32", "bfloat16", "float16")
FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
UNITS = ("group", "respondent")
READOUTS = ("mlp", "ridge")


@dataclass
class DataConfig:
    source: str = "${GPO_DATA_DIR}/opinionqa/group_distributions.jsonl.gz"  # a file, a folder, or "synthetic"
    dataset: str = ""  # the name results carry; "" = the source file's name
    # "group": a task is a group's answer distribution; "respondent": a task is one person's answers
    # (per-respondent data: gpo/data/respondents.py), and the *_groups keys name respondent ids
    unit: str = "group"
    groups: typing.Union[str, list] = "paper17"  # preset name, "all", or group labels: the groups roles are drawn from
    test_groups: typing.Union[str, list] = field(default_factory=list)  # named test groups (preset or labels); [] = drawn
    val_groups: typing.Union[str, list] = field(default_factory=list)  # named validation groups; [] = drawn from training
    train_groups: typing.Union[str, list] = field(default_factory=list)  # named training groups; [] = drawn
    extra_train_groups: typing.Union[str, list] = field(default_factory=list)  # training-only groups; "rest" = all others
    test_source: str = ""  # another survey file the test groups come from (transfer); "" = source
    require_all_groups: bool = True  # evaluation questions: answered by every group that may be evaluated (else by min_groups)
    min_groups: int = 1
    require_ordinal: bool = True  # keep questions with an ordinal scale only
    options_as_letters: bool = False  # options become "A", "B", ... with their wording moved into the question
    test_answer_fraction: float = 1.0  # each test group keeps a random share of its answers (sparse groups)
    # new questions: a seeded share of the evaluation questions that only test groups answered, scored
    # alone (contexts come from the others), and as many again that only validation groups answered,
    # on which their choices are made; no training group answered either (the basis has no row of them)
    new_question_fraction: float = 0.0
    on_bad_rows: str = "skip"  # "skip" (report and drop) or "error" (stop at the first)
    train_fraction: float = 0.4  # share of groups seen in meta-training (the rest are test groups)
    split_rounding: str = "round"  # the seen groups: round(train_fraction x n), or "floor": int(), as the reference code
    val_fraction: float = 0.25  # share of the training candidates kept for model selection
    # "carved": val_fraction of the seen groups validate; REFERENCE_VALIDATION: none is carved out and
    # the test groups validate, as the reference code does (a bug: every row it makes is marked)
    validation: str = "carved"
    questions: str = ""  # a CSV whose `key` column lists the questions to keep (an OpinionQA info.csv); "" = all
    split_seed: int = 0
    synthetic: SyntheticWorld = field(default_factory=SyntheticWorld)  # source "synthetic", groups
    synthetic_respondents: SyntheticRespondents = field(default_factory=SyntheticRespondents)  # ... respondents

    def __post_init__(self):
        require(self.unit in UNITS, "unit", f"one of {UNITS}", self.unit)
        require(self.unit == "group" or self.groups == "all", "groups", "'all' for respondents (roles are drawn from "
                "every respondent; name them with test_groups, val_groups, train_groups)", self.groups)
        require(self.unit == "group" or not (self.test_source or self.extra_train_groups or self.options_as_letters
                                             or self.test_answer_fraction < 1 or self.new_question_fraction), "unit",
                "'group' for test_source, extra_train_groups, options_as_letters, test_answer_fraction and "
                "new_question_fraction", self.unit)
        require(self.on_bad_rows in ("skip", "error"), "on_bad_rows", "'skip' or 'error'", self.on_bad_rows)
        require(self.split_rounding in ("round", "floor"), "split_rounding", "'round' or 'floor'", self.split_rounding)
        require(self.validation in ("carved", REFERENCE_VALIDATION), "validation", f"'carved' or {REFERENCE_VALIDATION!r}",
                self.validation)
        require(self.unit == "group" or self.validation == "carved", "validation", "'carved' for respondents", self.validation)
        require(0 < self.train_fraction < 1, "train_fraction", "a fraction in (0, 1)", self.train_fraction)
        require(0 < self.val_fraction < 1, "val_fraction", "a fraction in (0, 1): validation tasks choose checkpoints and "
                "every setting (at least one is drawn; name them with data.val_groups)", self.val_fraction)
        require(0 < self.test_answer_fraction <= 1, "test_answer_fraction", "a fraction in (0, 1]", self.test_answer_fraction)
        require(0 <= self.new_question_fraction < 0.5, "new_question_fraction", "a fraction in [0, 0.5)",
                self.new_question_fraction)
        require(self.min_groups >= 1, "min_groups", "at least 1", self.min_groups)
        require(not self.test_source or bool(self.test_groups), "test_groups", "the test groups of data.test_source",
                self.test_groups)

    def resolved_source(self) -> str:
        return self.resolve(self.source)

    @staticmethod
    def resolve(path: str) -> str:
        """A data path with ${GPO_DATA_DIR} filled in (from the environment, where a relative
        folder is relative to the working folder), relative to the project."""
        if path == "synthetic":
            return path
        data_dir = os.path.abspath(os.environ["GPO_DATA_DIR"]) if os.environ.get("GPO_DATA_DIR") else DEFAULT_DATA_DIR
        return str(in_project(path.replace("${GPO_DATA_DIR}", data_dir)))

    def name(self) -> str:
        """The dataset name results carry: `dataset`, else the (test) source file's name."""
        if self.dataset:
            return self.dataset
        path = Path(self.resolve(self.test_source or self.source))
        return path.name.split(".")[0] if path.suffix else path.name


@dataclass
class EmbedConfig:
    model: str = "minilm"  # a short name (gpo/embed/models.py), "synthetic" (the synthetic world's features), a path or a hub id
    layers: int = 0  # keep only the first N transformer blocks (0 = all): the size ladder
    template: str = "gpo"  # prompt template (gpo/prompts.py)
    max_tokens: int = 512  # longer prompts lose the end of their prefix, never the option
    pooling: str = "mean"  # the last hidden layer's mean over a prompt's tokens (the paper), or "last": its last token's
    batch_tokens: int = 0  # token budget per forward pass (length-bucketed); 0 = 4096 on CPU, 65536 on GPU
    dtype: str = "float32"  # float32, bfloat16, float16
    # Ray ranks: "cuda" (or cuda:N) requests one GPU each, so an autoscaler adds GPU nodes for it;
    # "cpu" none; "auto" one when a node has GPUs at the start (or Ray's v2 autoscaler lists a GPU
    # node type). In process (workers: 0): the device itself, "auto" = cuda when this machine has one
    device: str = "auto"
    # "hf" (plain transformers), "deepspeed" (init_inference: tensor parallelism for tp > 1, kernel
    # injection on GPU when asked), "auto" (deepspeed when tp > 1 or injecting on a GPU, else hf)
    backend: str = "auto"
    tp: int = 1  # tensor-parallel ranks per replica (DeepSpeed AutoTP): Ray actors on one node, a GPU each on GPU
    kernel_inject: bool = False  # DeepSpeed kernel injection, GPU only (wrong for padded Llama inputs: keep off)
    prefix_sharing: str = "auto"  # "auto" (on for causal LMs), "on", "off"
    workers: int = 1  # Ray replicas (data parallel over shards), tp actors each; 0 = in this process, no Ray
    threads: int = 0  # CPU threads per rank (0 = the largest node's CPUs / (replicas per node x tp))
    max_restarts: int = 3  # a replica failing this many times more in a row, or a shard crashing it, stops the job
    # seconds with no replica on a node while the autoscaler starts none (nodes being launched or
    # set up do not count) before the job stops, naming what a replica asks for and what nodes have
    placement_timeout: float = 300.0
    ray_address: str = ""  # "": $RAY_ADDRESS (a submitted job) or a private local Ray; "auto": the running cluster
    shard_size: int = 64  # questions per cache shard (the unit of work)
    cache_dir: str = ".cache/embeddings"

    def __post_init__(self):
        require(self.template in TEMPLATES, "template", f"one of {sorted(TEMPLATES)}", self.template)
        require(self.dtype in DTYPES, "dtype", f"one of {DTYPES}", self.dtype)
        require(self.pooling in ("mean", "last"), "pooling", "'mean' or 'last'", self.pooling)
        require(self.backend in ("hf", "deepspeed", "auto"), "backend", "'hf', 'deepspeed' or 'auto'", self.backend)
        require(self.prefix_sharing in ("auto", "on", "off"), "prefix_sharing", "'auto', 'on' or 'off'", self.prefix_sharing)
        check_device(self.device, "device")
        for key in ("layers", "batch_tokens", "workers", "threads", "max_restarts"):
            require(getattr(self, key) >= 0, key, "at least 0", getattr(self, key))
        for key in ("tp", "shard_size", "max_tokens"):
            require(getattr(self, key) >= 1, key, "at least 1", getattr(self, key))
        require(self.placement_timeout > 0, "placement_timeout", "a positive number of seconds", self.placement_timeout)
        # tensor parallelism is DeepSpeed's, one Ray actor per rank
        require(self.tp == 1 or self.backend != "hf", "backend", f"deepspeed or auto for tp={self.tp} (plain transformers "
                "has no tensor parallelism)", self.backend)
        require(self.tp == 1 or self.workers >= 1, "workers", f"at least 1 for tp={self.tp} (one process per rank: Ray "
                "replicas)", self.workers)


@dataclass
class ModelConfig:
    d_model: int = 128
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 128
    embed_depth: int = 4  # layers of the input MLP on [x; y]
    dropout: float = 0.0
    prior: str = "none"  # "none" (the paper), or a baseline to correct (gpo/registry.py: those registered as prior)
    features: list = field(default_factory=lambda: ["embedding"])  # what a point carries (gpo/features.py)
    readout: str = "ridge"  # "mlp" (the paper: a target's own state alone) or "ridge" (plus in-context ridge regression)
    readout_dim: int = 32  # features of the ridge readout
    scale_embedding: bool = True  # centre the embeddings and scale them to unit RMS per dimension (false: as given, the paper)

    def __post_init__(self):
        for key in ("d_model", "n_layers", "n_heads", "d_ff", "embed_depth"):
            require(getattr(self, key) >= 1, key, "at least 1", getattr(self, key))
        require(self.d_model % self.n_heads == 0, "d_model", f"a multiple of n_heads ({self.n_heads})", self.d_model)
        require(0 <= self.dropout < 1, "dropout", "a probability in [0, 1)", self.dropout)
        require(self.readout in READOUTS, "readout", f"one of {READOUTS}", self.readout)
        require(self.readout_dim >= 1, "readout_dim", "at least 1", self.readout_dim)
        require(isinstance(self.features, list) and "embedding" in self.features, "features",
                "a list holding 'embedding' (gpo/features.py)", self.features)


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_groups: int = 32  # tasks per step (groups drawn with replacement)
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    ctx_min: int = 10  # context questions per task ~ U{ctx_min..ctx_max}
    ctx_max: int = 100
    ctx_curriculum: int = 0  # steps over which the largest context grows from ctx_min to ctx_max (0 = none)
    tar_min: int = 10  # target questions per task ~ U{tar_min..tar_max}
    tar_max: int = 100
    loss: str = "gaussian"  # "gaussian" (the paper) or "ce"
    seed: int = 0
    question_order: str = "task"  # a random question order per task of a batch, or "batch": one per batch (the reference)
    ensemble: int = 1  # models trained from seeds seed, seed + 1, ...; GPO predicts their average
    eval_every: int = 100  # validation (and checkpoint) interval in steps
    val_k: int = 20  # context questions when scoring validation groups
    device: str = "auto"

    def __post_init__(self):
        for key in ("steps", "batch_groups", "tar_min", "ensemble", "eval_every"):
            require(getattr(self, key) >= 1, key, "at least 1", getattr(self, key))
        for key in ("weight_decay", "warmup", "grad_clip", "ctx_min", "ctx_curriculum", "val_k"):
            require(getattr(self, key) >= 0, key, "at least 0", getattr(self, key))
        require(self.lr > 0, "lr", "a positive learning rate", self.lr)
        require(self.ctx_max >= self.ctx_min, "ctx_max", f"at least ctx_min ({self.ctx_min})", self.ctx_max)
        require(self.tar_max >= self.tar_min, "tar_max", f"at least tar_min ({self.tar_min})", self.tar_max)
        require(self.question_order in ("task", "batch"), "question_order", "'task' or 'batch'", self.question_order)
        check_device(self.device, "device")


@dataclass
class ShrinkPolicy:
    """How far each context-reading method leans on its no-context reference: it predicts
    (1 - w) * itself + w * reference (gpo/shrink.py), the reference being the mean prior, or a
    residual GPO's own prior. w = 1 ignores the context, and is always among the choices."""

    enabled: bool = True  # w per k from SHRINK, chosen on validation groups (False: every method as it is)
    per_task: bool = True  # ... raised where a task's own context asks for more (leave-one-out on its context; not on new questions)
    per_task_se: float = 0.0  # the per-task rule's caution: the most shrunk w within this many standard errors of the best
    per_task_holdout: int = 0  # context questions the rule holds out, at most (0: every one; each costs a prediction)
    training_floor: bool = True  # GPO: w at least what its own training groups choose (they flatter it; not on new questions)

    def __post_init__(self):
        require(self.per_task_se >= 0, "per_task_se", "at least 0", self.per_task_se)
        require(self.per_task_holdout >= 0, "per_task_holdout", "at least 0 (0: every context question)", self.per_task_holdout)

    def task_se(self) -> float | None:
        """The per-task rule's tolerance, None when tasks are not shrunk."""
        return self.per_task_se if self.enabled and self.per_task else None


@dataclass
class EvalConfig:
    ks: list = field(default_factory=lambda: [0, 5, 10, 20])  # context sizes
    draws: int = 5  # random context sets per group and k, shared by all methods
    contexts: str = "per-task"  # each task draws its own context questions, or "shared": one draw for every task (the reference)
    aggregate: str = "tasks"  # a method's score: the mean over tasks of their means, or "pairs": over (task, question) pairs
    seed: int = 1234
    max_targets: int = 0  # target questions per episode (0 = all the rest); LLM baselines need a cap
    shrink: ShrinkPolicy = field(default_factory=ShrinkPolicy)
    baselines: list = field(default_factory=lambda: ["uniform", "mean", "ridge", "mixture", "logit", "kernel"])
    llm_baselines: list = field(default_factory=list)  # zero_shot, steered, few_shot, sft, reward, icft (needs llm.model)
    # tasks scored at a time, each such shard kept in the run folder as it finishes (gpo/shards.py)
    shard_tasks: int = 500
    # "process", "ray" (a Ray task per shard), "auto": Ray in a Ray driver or a submitted job (RAY_ADDRESS)
    backend: str = "auto"
    ray_address: str = ""  # "": $RAY_ADDRESS or a private local Ray; "auto": the running cluster

    def __post_init__(self):
        require(len(self.ks) > 0 and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in self.ks),
                "ks", "a list of context sizes (integers >= 0)", self.ks)
        require(self.draws >= 1, "draws", "at least 1", self.draws)
        require(self.contexts in ("per-task", "shared"), "contexts", "'per-task' or 'shared'", self.contexts)
        require(self.aggregate in ("tasks", "pairs"), "aggregate", "'tasks' or 'pairs'", self.aggregate)
        require(self.max_targets >= 0, "max_targets", "at least 0", self.max_targets)
        require(self.shard_tasks >= 1, "shard_tasks", "at least 1", self.shard_tasks)
        require(self.backend in ("auto", "process", "ray"), "backend", "'auto', 'process' or 'ray'", self.backend)
        require(set(self.llm_baselines) <= set(LLM_BASELINES), "llm_baselines", f"names from {list(LLM_BASELINES)}", self.llm_baselines)


@dataclass
class LLMConfig:
    model: str = ""  # causal LM for the LLM baselines: a hub id or a local folder
    dtype: str = "float32"
    device: str = "auto"
    batch_size: int = 8
    max_tokens: int = 2048  # longer prompts keep their end (the question being asked)
    steer: str = "portray"  # steering style: bio, qa or portray
    lora_r: int = 8
    lora_alpha: int = 16
    lora_lr: float = 1e-3
    lora_steps: int = 20  # per-episode steps of the per-group SFT and reward model
    samples_per_question: int = 20  # answers sampled from a group's distribution for SFT
    icft_steps: int = 200  # meta-training steps of in-context fine-tuning

    def __post_init__(self):
        require(self.dtype in DTYPES, "dtype", f"one of {DTYPES}", self.dtype)
        require(self.steer in STYLES, "steer", f"one of {STYLES}", self.steer)
        check_device(self.device, "device")
        for key in ("batch_size", "max_tokens", "lora_r", "samples_per_question"):
            require(getattr(self, key) >= 1, key, "at least 1", getattr(self, key))
        for key in ("lora_steps", "icft_steps"):
            require(getattr(self, key) >= 0, key, "at least 0", getattr(self, key))
        require(self.lora_lr > 0, "lora_lr", "a positive learning rate", self.lora_lr)


# The reference code's protocol where it departs from this project's (configs/paper-reference.yaml)
REFERENCE = {"data.split_rounding": "floor", "data.validation": REFERENCE_VALIDATION, "train.grad_clip": 0.0,
             "train.question_order": "batch", "eval.contexts": "shared", "eval.draws": 1, "eval.aggregate": "pairs"}
# ... where tasks answer different questions (GlobalOpinionQA: data.require_all_groups false), the
# reference orders each task's questions apart and draws each test group its own context, as here
PER_TASK_REFERENCE = {**REFERENCE, "train.question_order": "task", "eval.contexts": "per-task"}


@dataclass
class ExperimentConfig:
    name: str = "demo"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)

    def __post_init__(self):
        require(self.data.unit == "group" or not self.eval.llm_baselines, "eval.llm_baselines", "none for respondents",
                self.eval.llm_baselines)

    @property
    def protocol(self) -> str:
        """Which protocol made a result: "project", "reference" (the reference code's, point by
        point: REFERENCE), or the one of the two it is closer to with its departures named."""
        values = {"data.split_rounding": self.data.split_rounding, "data.validation": self.data.validation,
                  "train.grad_clip": self.train.grad_clip, "train.question_order": self.train.question_order,
                  "eval.contexts": self.eval.contexts, "eval.draws": self.eval.draws, "eval.aggregate": self.eval.aggregate}
        reference = REFERENCE if self.data.require_all_groups else PER_TASK_REFERENCE
        like = [key for key, value in reference.items() if values[key] == value]
        if len(like) == len(reference):
            return "reference"
        if 2 * len(like) > len(reference):
            return "reference except " + ", ".join(f"{k}={values[k]}" for k in reference if k not in like)
        return "project" + (" except " + ", ".join(f"{k}={values[k]}" for k in like) if like else "")

    @property
    def run_dir(self) -> Path:
        return in_project(self.out_dir) / self.name


def _coerce(value, hint, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a {hint}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 3e-3 (no dot) as text
    expected = origin or hint
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
    return value


def from_dict(cls, values: dict, prefix: str = ""):
    """Build dataclass `cls` from a (nested) dict; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {[prefix + k for k in unknown]}; known: {sorted(names)}")
    fields = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    try:
        return cls(**fields)
    except ConfigError as e:  # a range check of the section (__post_init__) names its key without the section
        raise ConfigError(prefix + str(e)) from None


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
    tree[leaf] = value


def load_config(path: str | Path | None = None, overrides: list[str] = (), values: dict | None = None) -> ExperimentConfig:
    """Defaults <- YAML file <- `key=value` overrides <- `values` (dotted key -> Python value)."""
    tree: dict = {}
    if path is not None:
        path = config_file(path)
        tree = read_yaml(path, "config")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.steps=500")
        key, raw = item.split("=", 1)
        _set(tree, key.strip(), yaml.safe_load(raw))
    for key, value in (values or {}).items():
        _set(tree, key, value)
    defaults = to_dict(ExperimentConfig())
    try:
        refuse_old_shrink_keys(tree)
        cfg = from_dict(ExperimentConfig, merge(defaults, tree))
        check_names(cfg)
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def check_names(cfg: ExperimentConfig) -> None:
    """The names a config takes from the registries, for its unit: baselines and GPO's prior
    (gpo/registry.py), point features (gpo/features.py), the loss (gpo/losses.py). The methods
    register as they are imported and load torch only where they run (gpo/lazy.py)."""
    from gpo import baselines, registry  # noqa: F401  (gpo.baselines registers the built-in baselines)
    from gpo.features import FEATURES, units
    from gpo.losses import LOSSES

    unit = cfg.data.unit
    fits = registry.names(unit)
    require(set(cfg.eval.baselines) <= set(fits), "eval.baselines", f"baselines of {unit}s: names from {list(fits)}",
            cfg.eval.baselines)
    priors = registry.priors(unit)
    require(cfg.model.prior in priors, "model.prior", f"for {unit}s one of {priors}", cfg.model.prior)
    own = [f for f in FEATURES if unit in units(f)]
    require(set(cfg.model.features) <= set(own), "model.features", f"features of {unit}s from {own}", cfg.model.features)
    require(cfg.train.loss in LOSSES, "train.loss", f"one of {sorted(LOSSES)}", cfg.train.loss)


OLD_SHRINK = {"shrink_per_task": "per_task", "per_task_se": "per_task_se", "shrink_training_floor": "training_floor"}


def refuse_old_shrink_keys(tree: dict) -> None:
    """The shrink policy has one spelling, the section eval.shrink; its old flat keys are refused
    with the new key's name."""
    section = tree.get("eval")
    if not isinstance(section, dict):
        return
    if isinstance(section.get("shrink"), bool):
        raise ConfigError(f"eval.shrink: {str(section['shrink']).lower()} is an old spelling: use "
                          f"eval.shrink.enabled={str(section['shrink']).lower()}")
    for old, new in OLD_SHRINK.items():
        if old in section:
            raise ConfigError(f"eval.{old}: an old spelling: use eval.shrink.{new}")


def read_yaml(path: Path, kind: str) -> dict:
    """The mapping a YAML config (or study) file holds, or one error line saying what the file is."""
    hint = "" if path.suffix in (".yaml", ".yml") else "; a survey data file goes in data.source (--set data.source=FILE)"
    if not path.is_file():
        raise ConfigError(f"{path}: {kind} file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML {kind} file (binary or not UTF-8 text){hint}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or type(e).__name__}{hint}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of {kind} keys at the top level{hint}")
    return tree


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
