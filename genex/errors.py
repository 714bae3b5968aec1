"""The checkpoint error family, shared by the world-model and policy loaders (a leaf module: it imports nothing,
so every loader can raise these without importing another; :mod:`genex.checkpoints` re-exports them)."""

from __future__ import annotations

__all__ = ["CheckpointError", "CorruptCheckpointError", "CheckpointMismatchError"]


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, corrupt, or made for something else."""


class CorruptCheckpointError(CheckpointError):
    """The checkpoint's files are missing, truncated or corrupt."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was made for another env, frame size, action space or tokenizer."""
