"""Choosing the torch device for training and inference (shared by the world model and the tiny VLM)."""

from __future__ import annotations

import torch

__all__ = ["select_device"]


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; otherwise ``torch.device(name)``, checked so that asking
    for CUDA on a machine without it is a clear error at once, not a crash at the first tensor moved."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    return device
