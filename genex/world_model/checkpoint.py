"""World-model checkpoints: safetensors weights + ``config.json`` + a SHA-256 hash. Never pickle.

A shipped checkpoint is a folder::

    weights.safetensors   the (EMA) denoiser weights; header metadata holds the model config JSON
    config.json           {"format", "version", "model": WorldModelConfig, "sampler": SamplerConfig,
                           "sha256": of weights.safetensors, "data": ..., "command": ..., "train_seconds": ...}

A driving model v2 renderer (``layout_channels > 0``) also holds its layout stage in the same folder,
``layout.safetensors`` + ``layout.json`` (:func:`~genex.world_model.layout.save_layout`, written by
``genex train-layout`` or :func:`save_world_model`); :func:`load_world_model` loads it (a missing one is a
:class:`CorruptCheckpointError`: such a renderer cannot imagine without it).

The SHA-256 covers ``weights.safetensors`` only. Checkpoints saved before the sampler split have no
``"sampler"`` section: their ``"model"`` section holds the sampling fields (``steps``, ``snap``, ...), and
:func:`~genex.world_model.config.configs_from_dict` moves them into the :class:`SamplerConfig` on load (the
shipped checkpoints are read that way, unchanged). :func:`save_world_model` writes the new layout.

:func:`load_world_model` checks the hash (truncated/corrupt files fail with
:class:`CorruptCheckpointError`) and, given an env, the frame size and action
family (:class:`CheckpointMismatchError`). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, CheckpointMismatchError, CorruptCheckpointError
from ..io import atomic_write_bytes, sha256_file
from .config import SamplerConfig, check_env_compatible, configs_from_dict
from .denoiser import Denoiser
from .model import DiffusionWorldModel
from .sampler import sampler_of

if TYPE_CHECKING:
    from .layout import LayoutModel

__all__ = ["FORMAT", "VERSION", "CheckpointError", "CorruptCheckpointError", "CheckpointMismatchError",
           "save_world_model", "load_world_model", "load_denoiser", "check_env_compatible", "sha256_file",
           "atomic_write_bytes", "atomic_save_tensors"]

FORMAT = "genex-world-model"
VERSION = 1


def atomic_save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_world_model(denoiser: Denoiser, out: str | Path, extra: dict[str, Any] | None = None,
                     sampler: SamplerConfig | None = None, layout: "LayoutModel | None" = None) -> Path:
    """Write ``weights.safetensors`` then ``config.json`` (with the weights' hash) into folder ``out``, and the layout
    stage ``layout`` (a :class:`~genex.world_model.layout.LayoutModel`) when given; a layout stage already in
    ``out`` is kept otherwise (the trainer exports the renderer into a folder ``genex train-layout`` may fill).

    ``sampler`` (the ``"sampler"`` section) defaults to the one the denoiser was loaded with, else the defaults.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = denoiser.cfg
    if layout is not None:
        if len(layout.cfg.facts) != cfg.layout_channels:
            raise ValueError(f"the layout stage lays out {len(layout.cfg.facts)} facts; the renderer is conditioned "
                             f"on layout_channels={cfg.layout_channels}")
        from .layout import save_layout

        save_layout(layout, out)
    sampler = (sampler_of(denoiser) if sampler is None else sampler).check_model(cfg)
    weights = out / "weights.safetensors"
    atomic_save_tensors(denoiser.state_dict(), weights,
                        metadata={"format": FORMAT, "version": str(VERSION), "config": cfg.to_json()})
    meta = {"format": FORMAT, "version": VERSION, "model": cfg.to_dict(), "sampler": sampler.to_dict(),
            "sha256": sha256_file(weights), **(extra or {})}
    atomic_write_bytes(out / "config.json", json.dumps(meta, indent=2).encode())
    return out


def _read_meta(path: Path) -> dict[str, Any]:
    cfg_path = path / "config.json"
    if not path.is_dir():
        raise CorruptCheckpointError(f"{path} is not a world-model checkpoint folder (expected weights.safetensors "
                                     "and config.json inside)")
    if not cfg_path.exists():
        raise CorruptCheckpointError(f"{cfg_path} is missing; is {path} a world-model checkpoint folder?")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"{cfg_path} is not valid JSON ({e}); the checkpoint is corrupt") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not a {FORMAT} checkpoint (format={meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{cfg_path} has version {meta.get('version')}; this genex reads version {VERSION}")
    return meta


def load_denoiser(path: str | Path, verify_hash: bool = True) -> tuple[Denoiser, dict[str, Any]]:
    """Load the denoiser of checkpoint folder ``path``; returns ``(denoiser, metadata)``.

    The checkpoint's :class:`SamplerConfig` is ``denoiser.sampler`` (old-layout checkpoints: taken from their
    ``"model"`` section).
    """
    path = Path(path)
    meta = _read_meta(path)
    weights = path / "weights.safetensors"
    if not weights.exists():
        raise CorruptCheckpointError(f"{weights} is missing")
    if verify_hash and meta.get("sha256") and sha256_file(weights) != meta["sha256"]:
        raise CorruptCheckpointError(
            f"{weights} does not match the SHA-256 in config.json: the file is truncated or corrupt "
            "(re-download or re-export the checkpoint)")
    try:
        cfg, sampler = configs_from_dict(meta["model"], meta.get("sampler"))
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptCheckpointError(f"{path / 'config.json'} has an invalid model or sampler config: {e}") from e
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptCheckpointError(f"{weights} cannot be read as safetensors ({e}); the file is truncated or "
                                     "corrupt") from e
    denoiser = Denoiser(cfg)
    denoiser.sampler = sampler  # read by sampler_of (DiffusionWorldModel's default, save_world_model)
    try:
        denoiser.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(f"{weights} does not fit its config: {e}") from e
    meta["path"] = str(path)
    return denoiser, meta


def load_world_model(path: str | Path, env: Any = None, device: str = "auto", verify_hash: bool = True,
                     sampler: SamplerConfig | None = None):
    """Load a :class:`~genex.world_model.model.DiffusionWorldModel` from checkpoint folder ``path``.

    With ``env`` (a Gymnasium env), check frame size and actions against it and
    adopt its ``action_names``. ``sampler`` replaces the checkpoint's :class:`SamplerConfig`.
    A renderer with ``layout_channels > 0`` comes with the folder's layout stage (:attr:`DiffusionWorldModel.layout`):
    :class:`CorruptCheckpointError` where it is missing or unreadable, :class:`CheckpointMismatchError` where it
    lays out another number of facts or frame size.
    """
    denoiser, meta = load_denoiser(path, verify_hash=verify_hash)
    layout = None
    if denoiser.cfg.layout_channels:
        from .layout import load_layout

        layout = load_layout(path)  # raises CorruptCheckpointError when missing or unreadable
    try:
        model = DiffusionWorldModel(denoiser, info=meta, device=device, sampler=sampler, layout=layout)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"{path}: {e}") from e
    if env is not None:
        model.bind(env)
    return model
