"""The network behind the denoiser: a diffusers ``UNet2DModel`` plus conditioning.

Input channels: the (preconditioned) noisy next frame and the ``K`` context
frames stacked as channels, plus (GUI) one Gaussian click map; all
pixel-unshuffled by ``cfg.patch`` so the UNet runs at ``H/patch``. The noise
level (``c_noise``) and the action are embedded into one vector that the UNet
adds to its time embedding (``class_embed_type="identity"``). With
``cfg.glimpse`` (GUI), the patch of the last context frame under the click is
encoded by a small CNN and added to that vector too (see :func:`click_glimpse`).
With ``cfg.layout_channels`` (driving model v2), the target frame's occupancy
layout adds one +-1 map per fact to the input (see :func:`layout_maps`), or, with
``cfg.layout_encoder``, goes through its own small CNN whose zero-initialised
output is added to the UNet's first feature map (see :class:`LayoutEncoder`).
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel
from torch import nn
from torch.nn import functional as F

from .config import GUI_KEYS, WorldModelConfig

__all__ = ["ConditionedUNet", "LayoutEncoder", "check_layout", "weighed_cells", "click_glimpse", "click_map", "layout_maps",
           "widen_for_appearance", "widen_for_layout", "with_colours"]

#: side of the glimpse map (``cfg.glimpse_map`` channels) before it is upsampled to the UNet's input size
GLIMPSE_MAP_SIDE = 16


def click_map(xy: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """``float32[B, 1, H, W]`` Gaussian blobs at ``xy`` (``float[B, 2]`` in [0, 1]); zeros where ``x < 0``."""
    ys = (torch.arange(height, dtype=xy.dtype, device=xy.device) + 0.5) / height
    xs = (torch.arange(width, dtype=xy.dtype, device=xy.device) + 0.5) / width
    dx = (xs[None, :] - xy[:, 0, None]) * width  # [B, W] in pixels
    dy = (ys[None, :] - xy[:, 1, None]) * height
    blob = torch.exp(-(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / (2 * sigma**2))
    return (blob * (xy[:, 0] >= 0).to(xy.dtype)[:, None, None])[:, None]


def click_glimpse(frame: torch.Tensor, xy: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``float[B, C, h, w]``: the ``size = (h, w)`` patch of ``frame`` (``float[B, C, H, W]``) centred on the click
    ``xy`` (``float[B, 2]`` in [0, 1]); pixels outside the frame are -1 (black), and rows without a position
    (``x < 0``) are all zeros."""
    b, c, height, width = frame.shape
    h, w = size
    padded = F.pad(frame, (w // 2, w - w // 2, h // 2, h - h // 2), value=-1.0)
    cx = (xy[:, 0] * width).floor().long().clamp(0, width - 1)
    cy = (xy[:, 1] * height).floor().long().clamp(0, height - 1)
    rows = cy[:, None] + torch.arange(h, device=frame.device)[None]  # [B, h] in padded coordinates
    cols = cx[:, None] + torch.arange(w, device=frame.device)[None]  # [B, w]
    batch = torch.arange(b, device=frame.device)[:, None, None]
    patch = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, h, w, C]
    return patch.permute(0, 3, 1, 2) * (xy[:, 0] >= 0).to(frame.dtype)[:, None, None, None]


def layout_maps(layout: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``float32[B, F, H, W]``: a layout ``bool/uint8[B, F, gh, gw]`` (occupied cells nonzero) as +1 where a cell is
    occupied and -1 elsewhere, each cell repeated over its pixels (nearest upsampling), so the UNet sees at every
    pixel whether the frame it draws has a road user of each kind there."""
    occupied = (layout != 0).float()
    return F.interpolate(occupied, size=(height, width), mode="nearest") * 2 - 1


def weighed_cells(cfg: WorldModelConfig, layout: torch.Tensor) -> torch.Tensor:
    """``bool[B, 1, H, W]``: the pixels of the cells ``layout`` (``bool[B, F, gh, gw]``) occupies with one of
    ``cfg.agent_facts`` (every fact when it is empty): where the loss adds ``agent_weight`` and which
    ``SamplerConfig.keep_layout`` spares from snapping."""
    facts = layout[:, list(cfg.agent_facts)] if cfg.agent_facts else layout[:, :cfg.layout_channels]
    occupied = (facts != 0).any(1, keepdim=True).float()
    return F.interpolate(occupied, size=(cfg.height, cfg.width), mode="nearest") > 0


def check_layout(cfg: WorldModelConfig, layout: torch.Tensor | None, batch: int) -> None:
    """Raise ``ValueError`` unless ``layout`` is what ``cfg`` conditions on: ``[batch, layout_channels, gh, gw]`` with a
    grid dividing the frame when ``cfg.layout_channels > 0``, None otherwise."""
    if not cfg.layout_channels:
        if layout is not None:
            raise ValueError("this world model is not conditioned on a layout (layout_channels=0): pass layout=None")
        return
    if layout is None:
        raise ValueError(f"this world model renders a sampled layout (layout_channels={cfg.layout_channels}): pass the "
                         "target frame's occupancy as layout (bool[B, F, gh, gw]); DiffusionWorldModel samples it "
                         "from its layout stage")
    if layout.ndim != 4 or layout.shape[0] != batch or layout.shape[1] != cfg.layout_maps \
            or cfg.height % layout.shape[2] or cfg.width % layout.shape[3]:
        colours = (f" ({cfg.layout_channels} occupancy maps, then 3 colour channels for each of the facts "
                   f"{list(cfg.appearance_facts)}: see with_colours)") if cfg.appearance_facts else ""
        raise ValueError(f"layout must be [{batch}, {cfg.layout_maps}, gh, gw]{colours} with a grid dividing the "
                         f"{cfg.height}x{cfg.width} frame, got {list(layout.shape)}")


def with_colours(cfg: WorldModelConfig, layout: torch.Tensor, colours: torch.Tensor | None = None) -> torch.Tensor:
    """The layout a network with ``cfg.appearance_facts`` reads: ``uint8[..., layout_maps, gh, gw]`` from the
    occupancy ``bool/uint8[..., F, gh, gw]`` and each fact's colour ``uint8[..., F, 3]`` (``info["appearance"]``;
    None or 0: unknown), the colour written into the cells its fact occupies. A layout that already has the colour
    channels, or a model without ``appearance_facts``, is returned unchanged."""
    f = cfg.layout_channels
    if not cfg.appearance_facts or layout.shape[-3] == cfg.layout_maps:
        return layout
    if layout.shape[-3] != f:
        raise ValueError(f"expected a layout of {f} facts, got shape {list(layout.shape)}")
    occupied = layout != 0
    parts = [occupied.to(torch.uint8)]
    for i in cfg.appearance_facts:
        if colours is None:
            parts.append(torch.zeros_like(parts[0][..., :1, :, :]).expand(*layout.shape[:-3], 3, *layout.shape[-2:]))
            continue
        c = colours[..., i, :].to(torch.uint8)[..., :, None, None]  # [..., 3, 1, 1]
        parts.append(c * occupied[..., i:i + 1, :, :].to(torch.uint8))
    return torch.cat(parts, dim=-3)


class FourierFeatures(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(1, dim // 2) * 4.0, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x[:, None] * self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


class LayoutEncoder(nn.Module):
    """``layout bool[B, F, gh, gw] -> float[B, C0, H/p, W/p]``: features added to the UNet's first feature map.

    Why not just input channels (the first v2 renderer): fine-tuned from the shipped model, the first
    convolution's weights on the layout maps stayed ~5x smaller than on the image (weight decay pulls them back,
    and they share the image's learning rate), and the renderer drew from its context alone. Here the layout has
    its own parameters (``TrainConfig.layout_lr_scale`` trains them faster and without weight decay), a nonlinear
    read at the grid's resolution (two 3x3 convolutions see a cell and its neighbours), and a zero-initialised
    last convolution (ControlNet's zero convolution), so a widened model starts as the model it came from."""

    def __init__(self, facts: int, width: int, out_channels: int, colour_facts: tuple[int, ...] = ()) -> None:
        super().__init__()
        # occupancy maps first; then 3 channels of colour (uint8, 0: none / unknown) per fact of colour_facts
        self.facts, self.colour_facts = facts, tuple(colour_facts)
        self.read = nn.Sequential(nn.Conv2d(facts + 3 * len(self.colour_facts), width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU())
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, layout: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        occupied = (layout[:, :self.facts] != 0).float()
        x = occupied * 2 - 1
        if self.colour_facts:  # colours in [0, 1], 0 where the fact does not show (even if a colour was left there)
            shows = occupied[:, list(self.colour_facts)].repeat_interleave(3, dim=1)
            x = torch.cat([x, layout[:, self.facts:].float() / 255 * shows], dim=1)
        h = self.read(x)
        return self.out(F.interpolate(h, size=size, mode="nearest"))


class _ConvInPlus(nn.Module):
    """The UNet's first convolution, plus features that ride along as extra input channels after the ``conv``'s
    own: ``conv(x[:, :n]) + x[:, n:]``. Stateless, so the diffusers UNet's forward stays as it is."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.conv.in_channels
        return self.conv(x[:, :n]) + x[:, n:]


class ConditionedUNet(nn.Module):
    """``F(x_in, c_noise, context, action) -> float[B, 3, H, W]`` (the EDM network ``F_theta``)."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.cond_dim
        self.noise_embed = nn.Sequential(FourierFeatures(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.action_embed = nn.Embedding(cfg.num_actions, d)
        if cfg.action_family == "gui":
            self.key_embed = nn.Embedding(len(GUI_KEYS) + 3, d)  # keys, scroll up/down, none
            self.text_embed = nn.EmbeddingBag(cfg.text_buckets, d, mode="mean", padding_idx=0)
            self.xy_embed = nn.Linear(2, d)
        if any(cfg.glimpse):
            gh, gw = cfg.glimpse
            # two stride-2 convs keep the layout of the word under the click (which letters, where) in the
            # flattened code; cheap next to the UNet (the patch is a few hundred pixels)
            self.glimpse_embed = nn.Sequential(
                nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.SiLU(), nn.Flatten(),
                nn.Linear(64 * (gh // 4) * (gw // 4), d))
        if cfg.glimpse_map:
            self.glimpse_to_map = nn.Sequential(nn.SiLU(), nn.Linear(d, cfg.glimpse_map * GLIMPSE_MAP_SIDE**2))
        self.cond_mlp = nn.Sequential(nn.SiLU(), nn.Linear(d, d))
        extra = 1 if cfg.action_family == "gui" else 0
        p = cfg.patch
        maps = 0 if cfg.layout_encoder else cfg.layout_channels  # layout maps among the input channels
        in_ch = (3 * (cfg.context + 1) + extra + maps) * p * p + cfg.glimpse_map
        levels = len(cfg.channels)
        down = ["DownBlock2D"] * levels
        up = ["UpBlock2D"] * levels
        if cfg.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.unet = UNet2DModel(
            sample_size=(cfg.height // p, cfg.width // p), in_channels=in_ch, out_channels=3 * p * p,
            down_block_types=tuple(down), up_block_types=tuple(up), block_out_channels=tuple(cfg.channels),
            layers_per_block=cfg.layers_per_block, norm_num_groups=min(8, cfg.channels[0]),
            attention_head_dim=32, class_embed_type="identity", add_attention=cfg.attention,
            time_embedding_dim=d,
        )
        nn.init.zeros_(self.unet.conv_out.weight)
        nn.init.zeros_(self.unet.conv_out.bias)
        if cfg.layout_encoder:
            self.layout_encoder = LayoutEncoder(cfg.layout_channels, cfg.layout_encoder, cfg.channels[0],
                                                cfg.appearance_facts)
            self.unet.conv_in = _ConvInPlus(self.unet.conv_in)

    def embed(self, c_noise: torch.Tensor, action: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The conditioning vector ``float[B, cond_dim]``; ``context`` (stacked, float[B,3K,H,W]) feeds the
        click glimpse when the config has one."""
        return self._embed(c_noise, action, context)[0]

    def _embed(self, c_noise: torch.Tensor, action: torch.Tensor,
               context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(conditioning vector, glimpse code float[B, cond_dim] or None)``."""
        cfg = self.cfg
        e = self.noise_embed(c_noise) + self.action_embed(action[:, 0].long().clamp(0, cfg.num_actions - 1))
        if cfg.action_family == "gui":
            key = torch.where(action[:, 3] < 0, torch.full_like(action[:, 3], len(GUI_KEYS) + 2), action[:, 3])
            e = e + self.key_embed(key.long()) + self.text_embed(action[:, 4:].long())
            e = e + self.xy_embed(action[:, 1:3])
        if any(cfg.glimpse):
            if context is None:
                raise ValueError("this model conditions on the click glimpse: embed() needs the context frames")
            glimpse = click_glimpse(context[:, -3:], action[:, 1:3], cfg.glimpse)
            code = self.glimpse_embed(glimpse) * (action[:, 1] >= 0).to(e.dtype)[:, None]
            if cfg.click_text:  # the label's embedding (already in e) enters the code too: once more in the
                # vector below and, with glimpse_map, the map (the shipped model was trained this way)
                code = code + self.text_embed(action[:, 4:].long()) * (action[:, 0] == 0).to(e.dtype)[:, None]
            return self.cond_mlp(e + code), code
        return self.cond_mlp(e), None

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor,
                action: torch.Tensor, layout: torch.Tensor | None = None) -> torch.Tensor:
        """``x_in``: float[B,3,H,W]; ``c_noise``: float[B]; ``context``: float[B,3K,H,W] in [-1,1];
        ``action``: float[B, A] (see :mod:`.actions`); ``layout``: the target frame's occupancy
        ``bool/uint8[B, layout_channels, gh, gw]``, required exactly when ``cfg.layout_channels > 0``."""
        cfg = self.cfg
        parts = [x_in, context]
        if cfg.action_family == "gui":
            parts.append(click_map(action[:, 1:3], cfg.height, cfg.width, cfg.blob_sigma) * 2 - 1)
        check_layout(cfg, layout, x_in.shape[0])
        if layout is not None and not cfg.layout_encoder:
            parts.append(layout_maps(layout, cfg.height, cfg.width).to(x_in.dtype))
        h = torch.cat(parts, dim=1)
        if cfg.patch > 1:
            h = F.pixel_unshuffle(h, cfg.patch)
        cond, code = self._embed(c_noise, action, context)
        if cfg.glimpse_map:  # the glimpse code as a coarse spatial map beside the input (see WorldModelConfig)
            side = GLIMPSE_MAP_SIDE
            m = self.glimpse_to_map(code).view(-1, cfg.glimpse_map, side, side)
            h = torch.cat([h, F.interpolate(m, size=h.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
        if cfg.layout_encoder:  # added to the first feature map by _ConvInPlus
            h = torch.cat([h, self.layout_encoder(layout, h.shape[-2:]).to(h.dtype)], dim=1)
        t = torch.zeros(h.shape[0], device=h.device)
        out = self.unet(h, t, class_labels=cond).sample
        if cfg.patch > 1:
            out = F.pixel_shuffle(out, cfg.patch)
        return out


def widen_for_layout(state: dict[str, torch.Tensor], old: WorldModelConfig, new: WorldModelConfig,
                     init: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The weights ``state`` of a network made for ``old`` (no layout), made fit for ``new``: the same network with
    ``new.layout_channels`` layout maps. The UNet's first convolution gets zero weights for the new input
    channels (or, with ``new.layout_encoder``, the encoder is added with its zero last convolution), so the
    widened network computes exactly what the old one did until training teaches it to read the layout
    (fine-tuning the shipped renderer into the v2 one instead of training it from scratch).

    ``init``: the new network's own initial weights (``Denoiser(new).state_dict()``), where the encoder's first
    layers come from; required with ``new.layout_encoder``.

    ``ValueError`` unless the two configs differ only in ``layout_channels``/``layout_encoder`` (0 in ``old``)
    and training-only fields."""
    from dataclasses import replace

    if old.layout_channels or not new.layout_channels:
        raise ValueError(f"widening adds layout channels to a model without them (got {old.layout_channels} -> "
                         f"{new.layout_channels})")
    _require_same_network(replace(old, layout_channels=new.layout_channels, layout_encoder=new.layout_encoder,
                                  appearance_facts=new.appearance_facts), new, "its layout channels")
    keys = [k for k in state if k.endswith("unet.conv_in.weight")]  # a Denoiser's or a ConditionedUNet's state
    if len(keys) != 1:
        raise ValueError(f"expected one UNet input convolution in the weights, found {keys}")
    key = keys[0]
    if new.layout_encoder:
        if init is None:
            raise ValueError("widening into a layout encoder needs the new network's initial weights (init=)")
        prefix = key[:-len("unet.conv_in.weight")]
        out = {k.replace("unet.conv_in.", "unet.conv_in.conv.") if k.startswith(prefix + "unet.conv_in.") else k: v
               for k, v in state.items()}
        return {**out, **{k: v for k, v in init.items() if k.startswith(prefix + "layout_encoder.")}}
    w = state[key]  # [out, in_old, k, k]: the pixel-unshuffled image channels, then the glimpse map
    image = w.shape[1] - new.glimpse_map  # ConditionedUNet.forward unshuffles the layout maps after the image
    added = new.layout_channels * new.patch * new.patch  # channels and before it appends the glimpse map
    zeros = w.new_zeros(w.shape[0], added, *w.shape[2:])
    return {**state, key: torch.cat([w[:, :image], zeros, w[:, image:]], dim=1)}


def _require_same_network(start: WorldModelConfig, new: WorldModelConfig, besides: str) -> None:
    """``ValueError`` unless ``start`` (the start model's config with the widened fields set to ``new``'s) and
    ``new`` build the same network: they may differ only in sampling and training-only fields."""
    from .config import SAMPLING_ONLY, TRAINING_ONLY

    a, b = start.to_dict(), new.to_dict()
    diff = sorted(k for k in b if k not in SAMPLING_ONLY + TRAINING_ONLY and a.get(k) != b[k])
    if diff:
        raise ValueError(f"the start model differs in more than {besides}: {', '.join(diff)}")


def widen_for_appearance(state: dict[str, torch.Tensor], old: WorldModelConfig,
                         new: WorldModelConfig) -> dict[str, torch.Tensor]:
    """The weights ``state`` of a layout-encoder network made for ``old`` (no ``appearance_facts``), made fit for
    ``new`` (the same network told the colours of ``new.appearance_facts``): the encoder's first convolution gets
    zero weights for the colour channels, so the widened network computes exactly what the old one did.
    ``ValueError`` unless the configs differ only there (and in training-only fields)."""
    from dataclasses import replace

    if old.appearance_facts or not new.appearance_facts or not old.layout_encoder:
        raise ValueError("widening adds colour channels to a layout-encoder model without them (got appearance_facts "
                         f"{list(old.appearance_facts)} -> {list(new.appearance_facts)}, layout_encoder "
                         f"{old.layout_encoder})")
    _require_same_network(replace(old, appearance_facts=new.appearance_facts), new, "its colour channels")
    keys = [k for k in state if k.endswith("layout_encoder.read.0.weight")]
    if len(keys) != 1:
        raise ValueError(f"expected one layout encoder input convolution in the weights, found {keys}")
    w = state[keys[0]]  # [width, F, 3, 3]
    zeros = w.new_zeros(w.shape[0], 3 * len(new.appearance_facts), *w.shape[2:])
    return {**state, keys[0]: torch.cat([w, zeros], dim=1)}
