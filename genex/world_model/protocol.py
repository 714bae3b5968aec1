"""The ``WorldModel`` protocol every world model honours (diffusion, oracle, copy-last).

``imagine(context_frames, actions, num_samples=1, seed=None) -> frames``

* ``context_frames``: ``uint8[K, H, W, 3]``, the most recent observed frames,
  oldest first (the last one is "now"). Models that need fewer frames use the
  last ones; models that need more repeat the first.
* ``actions``: a sequence of ``T`` actions as the env defines them (driving:
  an index into ``env.action_space`` or an action name; GUI: the env's action dict).
* ``num_samples``: ``S``, independent futures sampled in one batch.
* ``seed``: makes the samples reproducible (``None``: not reproducible).
* returns ``uint8[S, T, H, W, 3]``: frame ``t`` is the imagined observation
  after taking ``actions[0..t]``.

``imagine_batch(contexts, actions, seed=None) -> uint8[B, T, H, W, 3]`` does the
same for ``B`` different contexts (``uint8[B, K, H, W, 3]``) and action
sequences (``B`` sequences of length ``T``), one sample each.

``context_is_state``: True when the context frames are all the model needs
(diffusion, copy-last); False for the oracle, whose state is a simulator snapshot.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["WorldModel", "check_context", "check_imagined"]


@runtime_checkable
class WorldModel(Protocol):
    context_is_state: bool

    def imagine(self, context_frames: np.ndarray, actions: Sequence[Any], num_samples: int = 1,
                seed: int | None = None) -> np.ndarray: ...

    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]],
                      seed: int | None = None) -> np.ndarray: ...


def check_context(context_frames: Any, batched: bool = False) -> np.ndarray:
    """Validate and return ``uint8[K,H,W,3]`` (or ``uint8[B,K,H,W,3]`` when ``batched``)."""
    x = np.asarray(context_frames)
    nd = 5 if batched else 4
    shape = "uint8[B, K, H, W, 3]" if batched else "uint8[K, H, W, 3]"
    if x.ndim == nd - 1:
        x = x[..., None, :, :, :] if not batched else x[:, None]
    if x.ndim != nd or x.shape[-1] != 3 or x.shape[-4] < 1:
        raise ValueError(f"context frames must be {shape}, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"context frames must be uint8 (0..255), got {x.dtype}")
    return x


def check_imagined(frames: np.ndarray, num_samples: int, horizon: int, hw: tuple[int, int]) -> None:
    expected = (num_samples, horizon, hw[0], hw[1], 3)
    if frames.shape != expected or frames.dtype != np.uint8:
        raise AssertionError(f"imagine returned {frames.dtype}{list(frames.shape)}, expected uint8{list(expected)}")
