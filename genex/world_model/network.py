"""The network behind the denoiser: a diffusers ``UNet2DModel`` plus conditioning.

Input channels: the (preconditioned) noisy next frame and the ``K`` context
frames stacked as channels, plus (GUI) one Gaussian click map; all
pixel-unshuffled by ``cfg.patch`` so the UNet runs at ``H/patch``. The noise
level (``c_noise``) and the action are embedded into one vector that the UNet
adds to its time embedding (``class_embed_type="identity"``). With
``cfg.glimpse`` (GUI), the patch of the last context frame under the click is
encoded by a small CNN and added to that vector too (see :func:`click_glimpse`).
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel
from torch import nn
from torch.nn import functional as F

from .config import GUI_KEYS, WorldModelConfig

__all__ = ["ConditionedUNet", "click_glimpse", "click_map"]

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


class FourierFeatures(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(1, dim // 2) * 4.0, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x[:, None] * self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


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
        in_ch = (3 * (cfg.context + 1) + extra) * p * p + cfg.glimpse_map
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
                action: torch.Tensor) -> torch.Tensor:
        """``x_in``: float[B,3,H,W]; ``c_noise``: float[B]; ``context``: float[B,3K,H,W] in [-1,1];
        ``action``: float[B, A] (see :mod:`.actions`)."""
        cfg = self.cfg
        parts = [x_in, context]
        if cfg.action_family == "gui":
            parts.append(click_map(action[:, 1:3], cfg.height, cfg.width, cfg.blob_sigma) * 2 - 1)
        h = torch.cat(parts, dim=1)
        if cfg.patch > 1:
            h = F.pixel_unshuffle(h, cfg.patch)
        cond, code = self._embed(c_noise, action, context)
        if cfg.glimpse_map:  # the glimpse code as a coarse spatial map beside the input (see WorldModelConfig)
            side = GLIMPSE_MAP_SIDE
            m = self.glimpse_to_map(code).view(-1, cfg.glimpse_map, side, side)
            h = torch.cat([h, F.interpolate(m, size=h.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
        t = torch.zeros(h.shape[0], device=h.device)
        out = self.unet(h, t, class_labels=cond).sample
        if cfg.patch > 1:
            out = F.pixel_shuffle(out, cfg.patch)
        return out
