"""The EDM math (Karras et al. 2022), as used by DIAMOND: preconditioning and loss.

``D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise)`` with

* ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma * sd / sqrt(sigma^2 + sd^2)``,
* ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma) / 4``;

training draws ``log(sigma) ~ N(p_mean, p_std^2)`` and regresses ``F`` onto
``(x0 - c_skip * x) / c_out`` (the EDM loss weighting, expressed in the
network's output space). Frames are ``[-1, 1]`` floats inside, ``uint8`` outside.
With ``cfg.residual`` the diffused variable is the change from the last context
frame (``x0 = next - last``), so "nothing moves" is the zero prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import WorldModelConfig
from .network import ConditionedUNet, weighed_cells

__all__ = ["Batch", "CHANGE_LEVELS", "Denoiser", "to_float", "to_uint8"]

#: a pixel "changes" (for ``cfg.change_weight``) when some channel of ``next - last`` exceeds this (uint8 levels)
CHANGE_LEVELS = 16


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8[..., H, W, 3] -> float[..., 3, H, W] in [-1, 1]."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float[..., 3, H, W] in [-1, 1] -> uint8[..., H, W, 3]."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1)


@dataclass
class Batch:
    """One training batch: ``context`` uint8[B,K,H,W,3], ``action`` float32[B,A], ``target`` uint8[B,H,W,3] and,
    for a model with ``layout_channels``, ``layout`` bool[B,F,gh,gw]: the target frame's occupancy (else None)."""

    context: torch.Tensor
    action: torch.Tensor
    target: torch.Tensor
    layout: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.context.to(device), self.action.to(device), self.target.to(device),
                     None if self.layout is None else self.layout.to(device))


class Denoiser(nn.Module):
    """EDM-preconditioned next-frame denoiser; ``forward(batch) -> (loss, logs)`` is the training contract."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = ConditionedUNet(cfg)

    def _scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sd = self.cfg.sigma_data
        s2 = sigma**2 + sd**2
        c_skip = sd**2 / s2
        c_out = sigma * sd / s2.sqrt()
        c_in = 1 / s2.sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    @staticmethod
    def stack_context(context: torch.Tensor) -> torch.Tensor:
        """uint8[B,K,H,W,3] -> float[B,3K,H,W] in [-1, 1]."""
        x = to_float(context)
        return x.flatten(1, 2)

    def denoise(self, noisy: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                action: torch.Tensor, layout: torch.Tensor | None = None) -> torch.Tensor:
        """``D(noisy; sigma)``: the estimate of the clean next frame, float[B,3,H,W].

        ``context`` is already stacked (float[B,3K,H,W], see :meth:`stack_context`); ``layout`` is the next frame's
        occupancy (bool[B,F,gh,gw]), which a model with ``layout_channels > 0`` requires (``ValueError`` without).
        """
        c_skip, c_out, c_in, c_noise = (s.view(-1, 1, 1, 1) for s in self._scalings(sigma))
        out = self.net(noisy * c_in, c_noise.flatten(), context, action, layout)
        return c_skip * noisy + c_out * out

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        context = self.stack_context(batch.context)
        x0 = to_float(batch.target)
        if cfg.residual:
            x0 = x0 - context[:, -3:]
        b = x0.shape[0]
        sigma = (torch.randn(b, device=x0.device) * cfg.p_std + cfg.p_mean).exp()
        noisy = x0 + torch.randn_like(x0) * sigma.view(-1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = (s.view(-1, 1, 1, 1) for s in self._scalings(sigma))
        out = self.net(noisy * c_in, c_noise.flatten(), context, batch.action, batch.layout)
        target = (x0 - c_skip * noisy) / c_out
        weight = self.pixel_weight(x0, batch.layout, out.dtype)
        if weight is not None:
            # normalised per batch so the loss scale (and the lr that suits it) does not depend on the weight
            loss = ((out - target).pow(2) * weight).mean() / weight.mean()
        else:
            loss = F.mse_loss(out, target)
        return loss, {"loss": float(loss.detach())}

    def pixel_weight(self, x0: torch.Tensor, layout: torch.Tensor | None,
                     dtype: torch.dtype | None = None) -> torch.Tensor | None:
        """``[B,1,H,W]`` in ``dtype`` (default ``x0``'s; the loss passes the network output's): each pixel's loss
        weight before normalisation, or None for the plain EDM loss. ``1 + change_weight`` where the target changes
        (``x0`` of a ``residual`` model), ``+ agent_weight`` inside the cells the target layout occupies (any of ``agent_facts``, or any fact)."""
        cfg = self.cfg
        if cfg.change_weight <= 0 and cfg.agent_weight <= 0:
            return None
        dtype = x0.dtype if dtype is None else dtype
        if cfg.change_weight > 0:
            changed = (x0.abs().amax(1, keepdim=True) > CHANGE_LEVELS / 127.5).to(dtype)  # [B,1,H,W]
            weight = 1 + cfg.change_weight * changed
        else:
            weight = torch.ones_like(x0[:, :1], dtype=dtype)
        if cfg.agent_weight > 0:
            assert layout is not None  # the network has checked it
            weight = weight + cfg.agent_weight * weighed_cells(cfg, layout).to(dtype)
        return weight
