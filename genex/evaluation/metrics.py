"""Image metrics of imagined frames against real ones: :func:`mse`, :func:`psnr` (and :func:`psnr_of_mse`) and
:func:`ssim`, each over the last three axes ``[..., H, W, 3]`` of uint8 frames.

Importing this module loads numpy only; :func:`ssim` imports torch when called.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mse", "psnr", "psnr_of_mse", "ssim"]


def mse(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error (uint8 levels squared) over the last three axes ``[..., H, W, 3]``."""
    return ((pred.astype(np.float64) - truth.astype(np.float64)) ** 2).reshape(*pred.shape[:-3], -1).mean(-1)


def psnr_of_mse(err: np.ndarray) -> np.ndarray:
    """PSNR (dB) of mean squared errors, capped at 60 dB."""
    return 10 * np.log10(255.0**2 / np.maximum(err, 255.0**2 * 1e-6))


def psnr(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PSNR (dB) over the last three axes ``[..., H, W, 3]``, capped at 60 dB."""
    return psnr_of_mse(mse(pred, truth))


def ssim(pred: np.ndarray, truth: np.ndarray, chunk: int = 256) -> np.ndarray:
    """SSIM over the last three axes ``[..., H, W, 3]`` (Gaussian window 11, sigma 1.5, mean over channels).

    Computed in chunks of ``chunk`` images to bound memory."""
    import torch
    from torch.nn import functional as F

    lead = pred.shape[:-3]
    xs = pred.reshape(-1, *pred.shape[-3:])
    ys = truth.reshape(-1, *truth.shape[-3:])
    g = torch.exp(-(torch.arange(11, dtype=torch.float32) - 5) ** 2 / (2 * 1.5**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(3, 1, 11, 11).contiguous()

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, win, groups=3)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    out = []
    for i in range(0, len(xs), chunk):
        # float copies: inputs may be read-only views (broadcasts, recorded arrays), which torch warns about
        x = torch.from_numpy(np.array(xs[i:i + chunk], dtype=np.float32)).movedim(-1, 1)
        y = torch.from_numpy(np.array(ys[i:i + chunk], dtype=np.float32)).movedim(-1, 1)
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        out.append(s.flatten(1).mean(1))
    return torch.cat(out).numpy().reshape(lead)
