"""Which torch device a stage runs on: a config's `device` setting, checked and resolved."""

from __future__ import annotations

from gpo.errors import require


def check_device(device: str, key: str) -> None:
    require(device in ("auto", "cpu") or device.split(":")[0] == "cuda", key, "'auto', 'cpu', 'cuda' or 'cuda:N'", device)


def pick_device(device: str) -> str:
    """`device` as torch names it: "auto" is the GPU when this machine has one, else the CPU."""
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
