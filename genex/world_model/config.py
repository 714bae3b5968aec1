"""Typed, serialisable configuration of the diffusion world model.

A :class:`WorldModelConfig` fixes everything the weights depend on: the
frame size, the number of context frames ``K``, the action vocabulary, the
network widths, the EDM preconditioning and the training noise. A
:class:`SamplerConfig` holds what only changes how frames are *sampled* from
those weights (the Karras schedule, the number of steps, Euler/Heun, the snap
and the changed-pixel gate), as diffusers keeps a scheduler apart from its
model. Both are saved next to the weights (``config.json``: ``"model"`` and
``"sampler"``); :func:`configs_from_dict` also reads the old layout, whose
``"model"`` section held the sampling fields too.

Presets (``--config NAME``): ``tiny`` (tests, seconds), ``small`` (driving,
64x64), ``small-layout`` (driving model v2: ``small`` conditioned on an occupancy
layout), ``driving-gpu`` and ``gui-small`` (GUI apps, 128x128); each gives a
model, a sampler and a training config.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

from genex.errors import CheckpointMismatchError

log = logging.getLogger(__name__)

__all__ = ["DRIVING_ACTION_VOCAB", "GUI_ACTION_TYPES", "GUI_KEYS", "WorldModelConfig", "SamplerConfig", "TrainConfig",
           "Preset", "PresetConfigs", "PRESETS", "check_env_compatible", "configs_from_dict", "SAMPLING_ONLY",
           "TRAINING_ONLY", "preset"]

#: One vocabulary of driving action *names*, so one model serves every driving scenario.
DRIVING_ACTION_VOCAB: tuple[str, ...] = ("accelerate", "cruise", "brake", "creep", "wait", "overtake")
#: GUI action types and keys, in the order of ``genex.envs.gui.actions`` (kept here: no env import).
GUI_ACTION_TYPES: tuple[str, ...] = ("click", "type", "key", "scroll", "wait")
GUI_KEYS: tuple[str, ...] = ("enter", "tab", "backspace", "delete", "escape", "up", "down", "left", "right", "home",
                             "end", "select_all")


@dataclass(frozen=True)
class SamplerConfig:
    """How frames are sampled from a world model's weights; the weights do not depend on any of it.

    Attributes:
        steps: denoising steps per imagined frame (>= 1).
        sampler: ``"euler"`` or ``"heun"`` (Heun evaluates the network twice per step, except the last).
        sigma_min, sigma_max, rho: the Karras schedule ``sigma_max`` ... ``sigma_min`` (then 0) with exponent
            ``rho``; ``0 < sigma_min <= sigma_max``.
        snap: with a ``residual`` model, a sampled per-pixel change whose largest channel is below ``snap`` uint8
            levels is set to exactly zero (the pixel is copied from the last frame). Rendered scenes change in
            large, piecewise-constant steps, so small predicted changes are denoising leftovers; without the snap
            they turn static frames (about 20% of driving steps) from a perfect copy into a noisy one. 0 disables it.
        min_changed_pixels: with a ``residual`` model, a sampled frame whose change (after the snap) touches fewer
            than this many pixels is replaced by an exact copy of the last frame. Two sampling steps from
            ``sigma_max`` give (nearly) the posterior mean, so where the model is unsure whether the ego car
            moves at all (it is braking to a stop, or waiting) it draws a faint outline of the move, and the few
            outline pixels that survive the snap cost a frame that is really static ~15 dB. A real driving move
            changes ~150 pixels (median on held-out steps); the threshold is chosen on validation recordings (see
            ``docs/world_model.md``). 0 disables it; it needs ``snap > 0`` (without the snap nearly every pixel
            changes a little and the gate never fires).
        keep_layout: with a layout model (driving v2), the snap and the gate spare the cells the rendered
            layout occupies with a weighed fact (``agent_facts``, else any fact): a pedestrian the layout stage
            chose is a commitment, not a leftover, and alone (~12 pixels, often under 32 levels on the grey road)
            it would fall to both.
        layout_snap: with ``keep_layout``, the snap inside the kept cells (uint8 levels; 0, the default, keeps
            every change there). The renderer draws a new pedestrian faintly (~20-30 levels) while its denoising
            leftovers are ~5-10, so a threshold between the two keeps the one and drops the other, and a road
            user who stays in view does not gather noise in its cells step after step.
    """

    steps: int = 3
    sampler: str = "euler"
    sigma_min: float = 0.002
    sigma_max: float = 2.0
    rho: float = 7.0
    snap: float = 0.0
    min_changed_pixels: int = 0
    keep_layout: bool = False
    layout_snap: float = 0.0

    def __post_init__(self) -> None:
        if self.layout_snap < 0 or (self.layout_snap and not self.keep_layout):
            raise ValueError(f"layout_snap must be >= 0 and needs keep_layout (it is the snap inside the kept "
                             f"cells), got {self.layout_snap} (keep_layout={self.keep_layout})")
        if self.sampler not in ("euler", "heun"):
            raise ValueError(f"sampler must be 'euler' or 'heun', got {self.sampler!r}")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps}")
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got sigma_min={self.sigma_min}, "
                             f"sigma_max={self.sigma_max}")
        if self.rho <= 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")
        if self.snap < 0:
            raise ValueError(f"snap must be >= 0 (uint8 levels), got {self.snap}")
        if self.min_changed_pixels < 0 or int(self.min_changed_pixels) != self.min_changed_pixels:
            raise ValueError(f"min_changed_pixels must be an integer >= 0, got {self.min_changed_pixels}")
        if self.min_changed_pixels and self.snap <= 0:
            raise ValueError("min_changed_pixels counts the pixels a sampled change touches after the snap: it needs "
                             f"snap > 0 (got snap={self.snap}); without the snap nearly every pixel changes a little "
                             "and the gate never fires")

    def check_model(self, model: "WorldModelConfig") -> "SamplerConfig":
        """Raise ``ValueError`` unless this sampler fits ``model`` (snap and the gate need ``residual``); returns self."""
        if (self.snap or self.min_changed_pixels) and not model.residual:
            raise ValueError(f"snap ({self.snap}) and min_changed_pixels ({self.min_changed_pixels}) act on the "
                             "sampled change from the last frame: they need a residual=True model")
        if self.keep_layout and not model.layout_channels:
            raise ValueError("keep_layout spares the cells of the rendered layout: it needs a layout model "
                             "(layout_channels > 0)")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("keep_layout", "layout_snap"):  # absent means off: the shipped checkpoints' sampler sections
            if not d[k]:  # stay as they were
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SamplerConfig":
        unknown = sorted(set(d) - set(SAMPLING_ONLY))
        if unknown:
            raise ValueError(f"unknown sampler config keys {unknown}; is this checkpoint from a newer genex?")
        return cls(**d)

    def replace(self, **changes: Any) -> "SamplerConfig":
        return replace(self, **changes)

    def overridden(self, overrides: dict[str, Any]) -> "SamplerConfig":
        """This sampler under command-line overrides (``--steps``, ``--snap``, ...): ``steps`` 0 keeps this one's
        steps; ``snap`` 0 without ``min_changed_pixels`` also turns the gate off (it counts the pixels left after
        the snap). Invalid values raise ``ValueError``."""
        overrides = {k: v for k, v in overrides.items() if v is not None and not (k == "steps" and v == 0)}
        if overrides.get("snap") == 0 and "min_changed_pixels" not in overrides and self.min_changed_pixels:
            log.info("--snap 0 also turns off min_changed_pixels (it counts the pixels left after the snap)")
            overrides["min_changed_pixels"] = 0
        return self.replace(**overrides)


#: the fields of :class:`SamplerConfig`: they only change sampling, not the weights (eval overrides, fine-tuning).
#: Checkpoints saved before the split hold them in their ``"model"`` section (see :func:`configs_from_dict`)
SAMPLING_ONLY = tuple(f.name for f in fields(SamplerConfig))
#: fields that only change how the weights are trained (noise levels drawn, loss weights), so a fine-tune may change them
TRAINING_ONLY = ("p_mean", "p_std", "change_weight", "agent_weight", "agent_facts")
#: fields a config leaves out of :meth:`WorldModelConfig.to_dict` at their default (0): they came after the shipped
#: checkpoints, whose ``config.json`` and weights metadata stay byte for byte what they were
_OMITTED_AT_DEFAULT = ("layout_channels", "agent_weight", "layout_encoder", "agent_facts", "appearance_facts")

@dataclass(frozen=True)
class WorldModelConfig:
    """What a world-model checkpoint's weights are (shapes, conditioning, network, EDM training constants).

    How frames are sampled from them is a :class:`SamplerConfig`.

    Attributes:
        height, width: frame size in pixels (frames are ``uint8[H, W, 3]``).
        context: ``K``, number of past frames stacked as input channels.
        action_family: ``"discrete"`` (driving: an embedding per action name) or
            ``"gui"`` (type + key + hashed text embeddings and a click blob map).
        action_vocab: names of the discrete actions (``discrete``) or action types (``gui``).
        patch: pixel-unshuffle factor before the UNet (2 halves the UNet's resolution: 4x cheaper).
        channels: UNet ``block_out_channels``; ``layers_per_block``: resnets per block.
        attention: add self-attention at the lowest resolution.
        cond_dim: width of the conditioning vector (noise level + action).
        text_buckets, text_length: hashed character-bigram vocabulary for typed text.
        blob_sigma: radius (pixels) of the Gaussian click map.
        residual: diffuse the change ``next - last context frame`` instead of the frame itself
            (copy-last is then the zero prediction; ``sigma_data`` is the std of that change).
        sigma_data, p_mean, p_std: EDM preconditioning and training noise distribution.
        change_weight: with ``residual``, the training loss of a pixel whose true change exceeds ``CHANGE_LEVELS``
            uint8 levels in some channel is weighted ``1 + change_weight`` (0: plain EDM loss). A driving pedestrian
            is ~20 of 4096 pixels, so under the plain loss drawing it does not pay; the weight makes changed pixels
            count. Weighting by the target biases the optimum towards "something changes" (it is an importance
            weight on outcomes), so it trades static-frame PSNR for small movers. Training only.
        glimpse: ``(height, width)`` in pixels of the *click glimpse* (GUI only; ``(0, 0)`` disables it): the patch
            of the last context frame under the click (or scroll) point, encoded by a small CNN into the conditioning vector. A
            click's effect depends on what is under it (the tab's name decides the page that opens), and a
            convolutional UNet cannot route a word at the click point to the whole page within its receptive
            field; the glimpse hands it over as a global, position-free code.
        glimpse_map: channels of a coarse *spatial* map (16x16, upsampled to the UNet's input size) decoded from the
            glimpse code and stacked with the UNet's input (0 disables it; needs ``glimpse``). The code alone only
            shifts every UNet feature map by a constant, which did not let a model draw the page that a tab's name
            opens: it drew the average page. The map gives the name a direct, per-position path to the layout.
        click_text: GUI only: a click's ``"label"`` (the text of the widget it targets, from the env's public
            ``describe_action``, as in WebDreamer's action descriptions "click the *Display* tab") is hashed into
            the text slots and, with ``glimpse_map``, feeds the map too. The glimpse reads the same word from pixels,
            but its CNN learns to read only if the UNet already uses its code; a label embedding is told apart from
            the first step. Needs recordings that carry labels (``genex record`` writes them for GUI envs).
        layout_channels: driving model v2 (issue 28): the number of occupancy facts (``info["occupancy"]``, in the
            recordings' fact order) the network is conditioned on; 0 (the default) is the model without them. A
            model that samples the next frame's posterior mean averages a rare, small road user away; with a
            layout, *where* road users show is chosen beforehand by the stochastic layout stage
            (:mod:`.layout`) and the network only renders that choice: the target frame's occupancy enters as
            ``layout_channels`` extra input maps (each cell upsampled to its pixels, +1 occupied, -1 empty).
            Training reads the recorded occupancy of each target frame; imagination samples it
            (:class:`~genex.world_model.model.DiffusionWorldModel` with a layout stage).
        agent_weight: with ``layout_channels``, the training loss of a pixel inside a cell that some fact occupies
            in the target frame is weighted ``1 + agent_weight`` (normalised per batch like ``change_weight``; the
            two add). A pedestrian is ~20 of 4096 pixels: without a weight, drawing it where the layout puts it
            barely lowers the loss, and the renderer learns to ignore the layout. Training only.
        agent_facts: the facts (indices into the layout's facts) whose cells ``agent_weight`` weighs; empty (the
            default) weighs every fact's. The crosswalk's truck and bus are in every frame and the copy of the
            context already draws them: weighing only the rare facts (pedestrian, ball, oncoming car) puts the
            weight where only the layout can tell. Training only, except that ``SamplerConfig.keep_layout`` spares
            the same facts' cells.
        layout_encoder: with ``layout_channels``, the width of a small CNN that reads the layout at its grid's
            resolution and adds its (zero-initialised) output to the UNet's first feature map
            (:class:`~genex.world_model.network.LayoutEncoder`); 0 (the default) stacks the layout maps with the
            input channels instead.
        appearance_facts: with ``layout_encoder``, the facts (indices into the layout's facts) whose *colour* the
            renderer is also told: per such fact 3 more layout channels (after the ``layout_channels`` occupancy
            maps) hold its mean colour (``info["appearance"]``, uint8, 1..255) in the cells it occupies and 0
            where it does not show or its colour is unknown. Why: a pedestrian's shirt is one of five colours; told
            only *where* it is, the renderer draws the mean over them, a faint grey that the policy rarely reads
            as a pedestrian (docs/world_model.md, "Appearance"). Told the colour, it has one thing to draw.
    """

    height: int = 64
    width: int = 64
    context: int = 4
    action_family: str = "discrete"
    action_vocab: tuple[str, ...] = DRIVING_ACTION_VOCAB
    patch: int = 2
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention: bool = False
    cond_dim: int = 128
    text_buckets: int = 512
    text_length: int = 16
    blob_sigma: float = 3.0
    residual: bool = True
    sigma_data: float = 0.2
    p_mean: float = -1.3
    p_std: float = 1.2
    change_weight: float = 0.0
    glimpse: tuple[int, int] = (0, 0)
    glimpse_map: int = 0
    click_text: bool = False
    layout_channels: int = 0
    agent_weight: float = 0.0
    agent_facts: tuple[int, ...] = ()
    layout_encoder: int = 0
    appearance_facts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.action_family not in ("discrete", "gui"):
            raise ValueError(f"action_family must be 'discrete' or 'gui', got {self.action_family!r}")
        if self.change_weight < 0 or (self.change_weight and not self.residual):
            raise ValueError(f"change_weight must be >= 0 and needs residual=True, got {self.change_weight} "
                             f"(residual={self.residual})")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got context={self.context}")
        down = self.patch * 2 ** (len(self.channels) - 1)
        if self.height % down or self.width % down:
            raise ValueError(f"height/width ({self.height}x{self.width}) must be divisible by patch*2^(levels-1)="
                             f"{down}; change the frame size, patch or channels")
        if len(self.glimpse) != 2 or any(int(g) != g or int(g) < 0 or int(g) % 4 for g in self.glimpse):
            raise ValueError(f"glimpse must be (height, width), each 0 or a multiple of 4, got {self.glimpse}")
        if any(self.glimpse) and not all(self.glimpse):
            raise ValueError(f"glimpse needs both height and width (or (0, 0) to disable it), got {self.glimpse}")
        if self.glimpse_map < 0 or (self.glimpse_map and not any(self.glimpse)):
            raise ValueError(f"glimpse_map ({self.glimpse_map}) must be >= 0 and needs a glimpse, got glimpse={self.glimpse}")
        if self.click_text and self.action_family != "gui":
            raise ValueError("click_text (the label of the clicked widget) needs action_family='gui'")
        if any(self.glimpse) and self.action_family != "gui":
            raise ValueError("glimpse (the patch under a click) needs action_family='gui'")
        if self.action_family == "gui" and tuple(self.action_vocab) != GUI_ACTION_TYPES:
            raise ValueError(f"gui action_vocab must be {GUI_ACTION_TYPES}")
        if isinstance(self.layout_channels, bool) or int(self.layout_channels) != self.layout_channels \
                or self.layout_channels < 0:
            raise ValueError(f"layout_channels must be an integer >= 0, got {self.layout_channels}")
        if self.agent_weight < 0 or (self.agent_weight and not self.layout_channels):
            raise ValueError(f"agent_weight must be >= 0 and needs layout_channels > 0 (it weighs the pixels the "
                             f"target layout occupies), got {self.agent_weight} (layout_channels="
                             f"{self.layout_channels})")
        object.__setattr__(self, "agent_facts", tuple(self.agent_facts))  # hashable, whatever the caller passed
        if any(isinstance(f, bool) or int(f) != f or not 0 <= f < self.layout_channels for f in self.agent_facts) \
                or len(set(self.agent_facts)) != len(self.agent_facts) or (self.agent_facts and not self.agent_weight):
            raise ValueError(f"agent_facts must be distinct fact indices in [0, layout_channels={self.layout_channels}) "
                             f"and needs agent_weight > 0, got {self.agent_facts} (agent_weight={self.agent_weight})")
        object.__setattr__(self, "agent_facts", tuple(int(f) for f in self.agent_facts))
        if isinstance(self.layout_encoder, bool) or int(self.layout_encoder) != self.layout_encoder \
                or self.layout_encoder < 0 or (self.layout_encoder and not self.layout_channels):
            raise ValueError(f"layout_encoder must be an integer >= 0 and needs layout_channels > 0, got "
                             f"{self.layout_encoder} (layout_channels={self.layout_channels})")
        object.__setattr__(self, "appearance_facts", tuple(self.appearance_facts))
        if any(isinstance(f, bool) or int(f) != f or not 0 <= f < self.layout_channels for f in self.appearance_facts) \
                or len(set(self.appearance_facts)) != len(self.appearance_facts) \
                or (self.appearance_facts and not self.layout_encoder):
            raise ValueError(f"appearance_facts must be distinct fact indices in [0, layout_channels="
                             f"{self.layout_channels}) and needs layout_encoder > 0, got {self.appearance_facts} "
                             f"(layout_encoder={self.layout_encoder})")
        object.__setattr__(self, "appearance_facts", tuple(int(f) for f in self.appearance_facts))

    @property
    def num_actions(self) -> int:
        return len(self.action_vocab)

    @property
    def layout_maps(self) -> int:
        """Channels of the layout the network reads: the occupancy facts, then 3 colour channels per
        ``appearance_facts`` entry (0 for a model without a layout)."""
        return self.layout_channels + 3 * len(self.appearance_facts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action_vocab"] = list(self.action_vocab)
        d["channels"] = list(self.channels)
        d["glimpse"] = list(self.glimpse)
        d["agent_facts"] = list(self.agent_facts)
        d["appearance_facts"] = list(self.appearance_facts)
        for k in _OMITTED_AT_DEFAULT:  # absent means the default (from_dict): older checkpoints stay byte-identical
            if not d[k]:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorldModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if set(unknown) & set(SAMPLING_ONLY):
            raise ValueError(f"{sorted(set(unknown) & set(SAMPLING_ONLY))} are sampler settings, not model ones: "
                             "read an old-layout config with configs_from_dict")
        if unknown:
            raise ValueError(f"unknown world-model config keys {unknown}; is this checkpoint from a newer genex?")
        d = dict(d)
        for k in ("action_vocab", "channels", "glimpse", "agent_facts", "appearance_facts"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> "WorldModelConfig":
        return replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (not part of the model's identity)."""

    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    max_steps: int = 2500
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    eval_every: int = 500
    log_every: int = 25
    eval_episodes: int = 4
    seed: int = 0
    # share of each batch drawn from windows where >= 5% of the pixels change (0: uniform windows)
    changed_share: float = 0.0
    # each env's share of a batch is proportional to (its windows) ** (1 - source_balance): 0 samples windows
    # uniformly (a big app's recordings dominate), 1 gives every env the same share, 0.5 is in between
    source_balance: float = 0.0
    # "bf16": autocast the training forward pass to bfloat16 (about 1.5x faster on CPUs with AVX512-BF16 and
    # on GPUs; weights, optimizer and loss stay float32); sampling always runs in float32. "auto": bf16 where
    # the device computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), else fp32: a CPU
    # without it emulates bf16 about 10x *slower* than fp32 (measured on an AMD EPYC; docs/world_model.md)
    precision: str = "fp32"
    # the learning rate of a layout encoder's parameters (WorldModelConfig.layout_encoder), as a multiple of lr,
    # without weight decay: a fine-tune from a model without layout starts them at zero next to trained weights
    layout_lr_scale: float = 1.0
    # share of training windows whose colour channels (WorldModelConfig.appearance_facts) are zeroed, "unknown":
    # the renderer then also draws a fact whose colour it is not told (a layout stage without colours)
    appearance_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.appearance_dropout <= 1.0:
            raise ValueError(f"appearance_dropout must be in [0, 1], got {self.appearance_dropout}")
        if not self.layout_lr_scale > 0:
            raise ValueError(f"layout_lr_scale must be > 0, got {self.layout_lr_scale}")
        if not 0.0 <= self.changed_share <= 1.0:
            raise ValueError(f"changed_share must be in [0, 1], got {self.changed_share}")
        if not 0.0 <= self.source_balance <= 1.0:
            raise ValueError(f"source_balance must be in [0, 1], got {self.source_balance}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {self.precision!r}")


class Preset(NamedTuple):
    """A named recipe: the network (:class:`WorldModelConfig`), how to sample it and how to train it."""

    model: WorldModelConfig
    sampler: SamplerConfig
    train: TrainConfig


#: the sampler of recipe v3 (docs/world_model.md): 2 Euler steps from sigma_max 80, small changes snapped to a copy
_V3_SAMPLER = SamplerConfig(sigma_max=80.0, steps=2, snap=32.0)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(WorldModelConfig(height=16, width=16, context=2, patch=1, channels=(16, 32), cond_dim=32,
                                    text_buckets=64, text_length=8),
                   SamplerConfig(),
                   TrainConfig(batch_size=8, lr=2e-3, warmup_steps=5, max_steps=60, ema_decay=0.9,
                               checkpoint_every=20, eval_every=30, log_every=5, eval_episodes=1)),
    # driving: bf16 training (where native: "auto") makes 6000 steps cost what 4000 fp32 steps did (~40 min on
    # one core of an AVX512-BF16 CPU; ~70 min in fp32 on 2 cores of a CPU without it); a sampled
    # change touching < 30 pixels is dropped (min_changed_pixels, chosen on the validation recordings)
    "small": Preset(WorldModelConfig(p_mean=2.0, p_std=1.5),
                    _V3_SAMPLER.replace(min_changed_pixels=30),
                    TrainConfig(max_steps=6000, precision="auto")),
    # one GPU (scripts/gpu_train_driving.sh, docs/gpu.md): recipe v3 on a wider UNet (2.9x the parameters of
    # `small`) and 4x the batch, so 4000 steps see 2.7x the windows of `small`'s 6000; sized to train in ~4 min on
    # one H100/H200 in bf16 (`small` ran ~17 steps/s there with three other runs on the card)
    "driving-gpu": Preset(WorldModelConfig(channels=(48, 96, 128), p_mean=2.0, p_std=1.5),
                          _V3_SAMPLER.replace(min_changed_pixels=30),
                          TrainConfig(batch_size=128, max_steps=4000, precision="auto", checkpoint_every=500,
                                      eval_every=1000)),
    # recipe v3 (docs/world_model.md): train mostly at high noise and sample from sigma_max 80, so the first
    # Euler step is a real prediction from context and action (at sigma 5 a screen-wide change still shows
    # through the noise, and the network learned to read it there instead of predicting it); 2 Euler steps,
    # snap leftovers to an exact copy; 80% of each GUI batch from windows that change (GUI videos are mostly
    # static). GUI attempt 6: apps balanced by sqrt of their windows (SettingsTabs, 9% of the changing windows,
    # was never learned at uniform draws), the 16x48 click glimpse, bf16 training and 6000 steps (the bf16
    # steps are 1.5x cheaper, so the run still takes ~37 min on one core)
    "gui-small": Preset(WorldModelConfig(height=128, width=128, context=2, action_family="gui",
                                         action_vocab=GUI_ACTION_TYPES, patch=4, channels=(48, 64, 96),
                                         blob_sigma=4.0, p_mean=2.0, p_std=1.5, glimpse=(16, 48), click_text=True),
                        _V3_SAMPLER,
                        TrainConfig(batch_size=16, max_steps=6000, changed_share=0.8, source_balance=0.5,
                                    precision="auto")),
    # driving model v2 (issue 28, docs/world_model.md): the `small` renderer conditioned on the target frame's
    # occupancy of the 5 OccludedCrosswalk facts (pedestrian, ball, truck, bus, oncoming_car), with the pixels
    # the layout occupies weighted 5x in the loss; imagination samples the layout from a layout stage trained
    # by `genex train-layout` into the same checkpoint folder
    "small-layout": Preset(WorldModelConfig(p_mean=2.0, p_std=1.5, layout_channels=5, agent_weight=4.0),
                           _V3_SAMPLER.replace(min_changed_pixels=30),
                           TrainConfig(max_steps=6000, precision="auto")),
    # the renderer's second attempt (docs/world_model.md): the layout through its own encoder, trained 10x faster
    # without weight decay, and the loss weight on the crosswalk's rare facts only (pedestrian, ball, oncoming car)
    "small-layout-v2": Preset(WorldModelConfig(p_mean=2.0, p_std=1.5, layout_channels=5, agent_weight=8.0,
                                               agent_facts=(0, 1, 4), layout_encoder=32),
                              _V3_SAMPLER.replace(min_changed_pixels=30, keep_layout=True, layout_snap=12.0),
                              TrainConfig(max_steps=6000, precision="auto", layout_lr_scale=10.0)),
    # v2 told the colour of the rare facts too (appearance_facts; docs/world_model.md, "Appearance"), so that it
    # draws one shirt rather than the mean of five
    "small-layout-v3": Preset(WorldModelConfig(p_mean=2.0, p_std=1.5, layout_channels=5, agent_weight=8.0,
                                               agent_facts=(0, 1, 4), layout_encoder=32, appearance_facts=(0, 1, 4)),
                              _V3_SAMPLER.replace(min_changed_pixels=30, keep_layout=True, layout_snap=12.0),
                              TrainConfig(max_steps=6000, precision="auto", layout_lr_scale=10.0,
                                          appearance_dropout=0.2)),
}


class PresetConfigs(tuple):
    """What :func:`preset` returns: the pair ``(model, train)`` (it unpacks as before the sampler split), with the
    preset's :class:`SamplerConfig` as ``.sampler`` (and ``.model``, ``.train``)."""

    sampler: SamplerConfig

    def __new__(cls, model: WorldModelConfig, train: TrainConfig, sampler: SamplerConfig) -> "PresetConfigs":
        self = super().__new__(cls, (model, train))
        self.sampler = sampler
        return self

    @property
    def model(self) -> WorldModelConfig:
        return self[0]

    @property
    def train(self) -> TrainConfig:
        return self[1]


def preset(name: str, **overrides: Any) -> PresetConfigs:
    """The configs of preset ``name``: ``model, train = preset(name)``, and ``preset(name).sampler``.

    ``overrides`` replace fields of any of the three; a sampling field (:data:`SAMPLING_ONLY`) goes to the sampler.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown world-model config {name!r}; choose one of {sorted(PRESETS)}")
    model, sampler, train = PRESETS[name]
    mk = {k: v for k, v in overrides.items() if k in {f.name for f in fields(WorldModelConfig)}}
    sk = {k: v for k, v in overrides.items() if k in SAMPLING_ONLY}
    tk = {k: v for k, v in overrides.items() if k in {f.name for f in fields(TrainConfig)}}
    bad = sorted(set(overrides) - set(mk) - set(sk) - set(tk))
    if bad:
        raise ValueError(f"unknown config field(s) {bad}")
    model = replace(model, **mk)
    return PresetConfigs(model, replace(train, **tk), replace(sampler, **sk).check_model(model))


def configs_from_dict(model: dict[str, Any], sampler: dict[str, Any] | None = None
                      ) -> tuple[WorldModelConfig, SamplerConfig]:
    """``(WorldModelConfig, SamplerConfig)`` from a checkpoint's ``"model"`` and ``"sampler"`` sections.

    A checkpoint saved before the split (no ``"sampler"`` section) holds the sampling fields in ``"model"``: they
    move to the sampler, and the fields it does not name take the :class:`SamplerConfig` defaults (what the old
    ``WorldModelConfig`` defaults were). A sampling field in both sections is an error (which one holds?).
    """
    model = dict(model)
    moved = {k: model.pop(k) for k in SAMPLING_ONLY if k in model}
    both = sorted(set(moved) & set(sampler or {}))
    if both:
        raise ValueError(f"{both} are set in both the model and the sampler sections")
    cfg = WorldModelConfig.from_dict(model)
    return cfg, SamplerConfig.from_dict({**moved, **(sampler or {})}).check_model(cfg)


def check_env_compatible(cfg: WorldModelConfig, env: Any, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointMismatchError` unless ``env``'s frames and actions fit ``cfg``."""
    base = getattr(env, "unwrapped", env)
    space = getattr(env, "observation_space", None)
    try:
        shape = tuple(space["image"].shape)
    except (TypeError, KeyError):
        shape = tuple(getattr(space, "shape", ()) or ())
    if shape[:2] != (cfg.height, cfg.width):
        env_id = getattr(getattr(env, "spec", None), "id", type(base).__name__)
        raise CheckpointMismatchError(
            f"{source} imagines {cfg.height}x{cfg.width} frames but {env_id} renders {shape[0]}x{shape[1]}; "
            f"use a checkpoint trained for this env and frame size (or make the env with width={cfg.width}, "
            f"height={cfg.height})")
    action_space = getattr(env, "action_space", None)
    is_dict = hasattr(action_space, "spaces") and "type" in getattr(action_space, "spaces", {})
    if cfg.action_family == "gui" and not is_dict:
        raise CheckpointMismatchError(f"{source} is a GUI world model but the env's actions are {action_space}")
    if cfg.action_family == "discrete":
        if is_dict:
            raise CheckpointMismatchError(f"{source} is a driving (discrete-action) world model but the env has "
                                          f"GUI actions; use a GUI checkpoint")
        from genex.envs.foreign import declared

        names = declared(env, "action_names", None)
        if names is not None:
            missing = sorted(set(names) - set(cfg.action_vocab))
            if missing:
                raise CheckpointMismatchError(f"{source} does not know the env's actions {missing} "
                                              f"(vocabulary {list(cfg.action_vocab)})")
