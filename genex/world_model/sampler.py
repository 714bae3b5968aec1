"""A few-step EDM sampler (Euler or Heun) over a Karras sigma schedule, set by a :class:`SamplerConfig`."""

from __future__ import annotations

import torch

from .config import SamplerConfig
from .denoiser import Denoiser
from .network import check_layout, weighed_cells

__all__ = ["karras_sigmas", "sample_next_frame", "sampler_of"]


def karras_sigmas(cfg: SamplerConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """``float[steps + 1]``: ``sigma_max`` ... ``sigma_min``, then 0."""
    n = cfg.steps
    ramp = torch.linspace(0, 1, n, device=device) if n > 1 else torch.zeros(1, device=device)
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    sigmas = (hi + ramp * (lo - hi)) ** cfg.rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sampler_of(denoiser: Denoiser) -> SamplerConfig:
    """The sampler a denoiser came with (``load_denoiser`` sets it from the checkpoint), else the defaults."""
    sampler = getattr(denoiser, "sampler", None)
    return sampler if isinstance(sampler, SamplerConfig) else SamplerConfig()


@torch.no_grad()
def sample_next_frame(denoiser: Denoiser, context: torch.Tensor, action: torch.Tensor,
                      sampler: SamplerConfig | None = None,
                      generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                      layout: torch.Tensor | None = None) -> torch.Tensor:
    """Sample the next frame: ``context`` float[B,3K,H,W], ``action`` float[B,A] -> float[B,3,H,W] in [-1,1].

    ``layout``: the next frame's occupancy ``bool[B,F,gh,gw]``, required by (and only by) a model with
    ``layout_channels > 0`` (``ValueError`` otherwise): the frame is rendered around it.

    ``sampler`` defaults to :func:`sampler_of` ``(denoiser)``. The starting noise is ``noise`` (unit
    ``float[B,3,H,W]``, drawn by the caller: :meth:`DiffusionWorldModel.imagine_calls` draws each call's rows
    from that call's own generator) when given, else ``randn`` from ``generator`` on the CPU.
    """
    cfg = denoiser.cfg
    sc = (sampler_of(denoiser) if sampler is None else sampler).check_model(cfg)
    b, device = context.shape[0], context.device
    check_layout(cfg, layout, b)  # before any noise is drawn
    sigmas = karras_sigmas(sc, device)
    if noise is None:
        noise = torch.randn((b, 3, cfg.height, cfg.width), generator=generator, device="cpu")
    elif tuple(noise.shape) != (b, 3, cfg.height, cfg.width):
        raise ValueError(f"noise must be float[{b}, 3, {cfg.height}, {cfg.width}], got {list(noise.shape)}")
    x = noise.to(device) * sigmas[0]
    for i in range(sc.steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoiser.denoise(x, s.expand(b), context, action, layout)) / s
        x_next = x + d * (s_next - s)
        if sc.sampler == "heun" and s_next > 0:
            d2 = (x_next - denoiser.denoise(x_next, s_next.expand(b), context, action, layout)) / s_next
            x_next = x + (d + d2) / 2 * (s_next - s)
        x = x_next
    if cfg.residual:
        keep = weighed_cells(cfg, layout) if sc.keep_layout and layout is not None else None  # [B,1,H,W] or None
        if sc.snap > 0:  # small changes are denoising leftovers: copy those pixels exactly
            change = x.abs().amax(1, keepdim=True)
            big = change >= sc.snap / 127.5
            x = x * (big if keep is None else big | (keep & (change >= sc.layout_snap / 127.5)))
        if sc.min_changed_pixels > 0:  # a faint outline of an unsure move: commit to "nothing moved"
            changed = (x != 0).any(1, keepdim=True)  # [B,1,H,W]
            if keep is not None:  # the gate judges the rest of the frame: the kept cells never count
                changed = changed & ~keep
            stays = (changed.flatten(1).sum(1) >= sc.min_changed_pixels).view(-1, 1, 1, 1)  # [B,1,1,1]
            x = x * (stays if keep is None else stays | keep)  # the layout's own cells stay whatever the rest does
        x = x + context[:, -3:]
    return x.clamp(-1, 1)
