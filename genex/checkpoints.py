"""Every checkpoint genex ships or trains, behind one loader and one error family.

A checkpoint is a folder with a ``config.json`` whose ``"format"`` says what it holds:
``genex-world-model`` (:func:`genex.world_model.load_world_model`) or ``genex-tiny-vlm``
(:class:`genex.policy.TinyPolicy`). :func:`load_checkpoint` reads the format and returns the ready object, so
a tool that takes "a checkpoint" needs no flag saying which kind. Both loaders raise the errors below, so a
caller catches :class:`CheckpointError` once, whatever it loads. This module imports torch only when it loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genex.errors import CheckpointError, CheckpointMismatchError, CorruptCheckpointError

__all__ = ["CheckpointError", "CorruptCheckpointError", "CheckpointMismatchError", "checkpoint_format",
           "load_checkpoint", "FORMATS"]

#: the formats :func:`load_checkpoint` knows, with what each loads
FORMATS = {"genex-world-model": "a video-diffusion world model", "genex-tiny-vlm": "a tiny VLM policy"}


def checkpoint_format(path: str | Path) -> str:
    """The ``"format"`` of checkpoint folder ``path`` (its ``config.json``); :class:`CheckpointError` if unreadable."""
    config = Path(path) / "config.json"
    if not Path(path).is_dir():
        raise CheckpointError(f"{path} is not a checkpoint folder (no such directory)")
    try:
        body = json.loads(config.read_text())
    except FileNotFoundError as e:
        raise CorruptCheckpointError(f"{path} has no config.json: not a genex checkpoint folder") from e
    except (OSError, ValueError) as e:
        raise CorruptCheckpointError(f"{config} is not valid JSON ({e})") from e
    fmt = body.get("format") if isinstance(body, dict) else None
    if fmt not in FORMATS:
        raise CheckpointError(f"{config} has format {fmt!r}; genex loads " +
                              ", ".join(f"{k} ({v})" for k, v in FORMATS.items()))
    return fmt


def load_checkpoint(path: str | Path, *, env: Any = None, device: str = "auto") -> Any:
    """The ready object in checkpoint folder ``path``: a ``DiffusionWorldModel`` (bound to ``env`` if given, on
    ``device``) or a ``TinyPolicy`` (CPU; frames resized to its size). Raises :class:`CheckpointError` (or a
    subclass) on any problem."""
    fmt = checkpoint_format(path)
    if fmt == "genex-world-model":
        from genex.world_model.checkpoint import load_world_model

        return load_world_model(path, env=env, device=device)
    from genex.policy.tiny import TinyPolicy

    return TinyPolicy.from_checkpoint(path, resize=True)
