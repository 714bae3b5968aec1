"""Choosing the torch device for training and inference, and Accelerate's process state (shared by the world
model and the tiny VLM trainers)."""

from __future__ import annotations

import torch

__all__ = ["select_device", "reset_plain_accelerate_state"]


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


def reset_plain_accelerate_state() -> None:
    """Drop the Accelerate state an earlier training left in this process, unless a launcher started it.

    Accelerate keeps its device, precision and process group in class attributes, one set per Python process: a
    second training in the same process (a world model, then a policy in bf16; a notebook) could not choose its
    own. Under ``accelerate launch`` the state is the process group's and stays.
    """
    from accelerate.state import AcceleratorState, GradientState, PartialState

    if PartialState._shared_state and not PartialState().use_distributed:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
