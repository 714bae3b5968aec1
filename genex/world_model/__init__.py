"""Action-conditioned video world models (DIAMOND-style EDM diffusion on diffusers).

Public API::

    from genex.world_model import (WorldModel, DiffusionWorldModel, CopyLastFrameWorldModel,
                                   OracleWorldModel, ImaginedEnv, load_world_model, WorldModelConfig)

    wm = load_world_model("checkpoints/world_model/driving", env=env)
    frames = wm.imagine(context_frames, actions, num_samples=4, seed=0)  # uint8[S, T, H, W, 3]

Modules: :mod:`.config` (typed configs, presets), :mod:`.actions` (action
encoding), :mod:`.network` (diffusers UNet + conditioning), :mod:`.denoiser`
(EDM math), :mod:`.sampler` (Euler/Heun), :mod:`.data` (recorded windows),
:mod:`.train` (the trainer and its hooks), :mod:`.checkpoint` (safetensors I/O),
:mod:`.model`, :mod:`.baselines`, :mod:`.posterior` (the fair upper bound), :mod:`.imagined_env`, :mod:`.evaluate`,
:mod:`.layout` (the stochastic layout stage of the driving model v2: where road users will show, sampled),
:mod:`.cli`.
This package never imports ``genex.envs``.
"""

from __future__ import annotations

from .baselines import CopyLastFrameWorldModel, OracleWorldModel
from .checkpoint import (CheckpointError, CheckpointMismatchError, CorruptCheckpointError, load_world_model,
                         save_world_model)
from .config import PRESETS, SamplerConfig, TrainConfig, WorldModelConfig, preset
from .denoiser import Batch, Denoiser
from .imagined_env import ImaginedEnv
from .model import DiffusionWorldModel
from .posterior import PosteriorWorldModel
from .protocol import WorldModel

__all__ = [
    "Batch", "CheckpointError", "CheckpointMismatchError", "CopyLastFrameWorldModel", "CorruptCheckpointError",
    "Denoiser", "DiffusionWorldModel", "ImaginedEnv", "OracleWorldModel", "PosteriorWorldModel", "PRESETS", "TrainConfig", "WorldModel",
    "WorldModelConfig", "SamplerConfig", "load_world_model", "preset", "save_world_model",
]
